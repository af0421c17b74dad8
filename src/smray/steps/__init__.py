"""The workflow's steps: each one a mode of the image, runnable in-process too."""
