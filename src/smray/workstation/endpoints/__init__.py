"""Endpoints: a model version served behind a stable address, locally (containers) or on SageMaker."""
