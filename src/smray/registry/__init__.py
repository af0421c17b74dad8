"""Model registries with SageMaker Model Registry's shape: groups of numbered model versions, each with
an approval status, metrics, artifact and image. `local` (SQLite + files) and `sagemaker` (boto3)."""
