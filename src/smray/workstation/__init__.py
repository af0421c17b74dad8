"""The workstation's side: what runs on the user's machine (or in CI) and never inside the image: the
`smray` CLI and its commands, the SageMaker pipeline and the retraining state machine, the local
workflow and scheduler, endpoints, local Ray clusters of containers, ECR, tracking and data generation.

It starts the image's jobs through the contracts in smray.contracts, never by importing the image's code."""
