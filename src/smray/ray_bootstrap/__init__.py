"""Forming a Ray cluster from SageMaker's resource config."""
