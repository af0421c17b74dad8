"""What a job's hosts share besides the resource config: the secret that admits a process to the job's
Ray cluster, set by whoever starts the job (the workflows, or a local cluster) and read by the image."""

TOKEN_ENV = "SMRAY_RAY_TOKEN"
