"""The image's entrypoint: one dispatcher, one module per mode."""
