"""Scheduled retraining: the Step Functions workflow on AWS (definition, IAM, schedule, deployment)."""
