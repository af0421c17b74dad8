"""SageMaker endpoints: model -> endpoint config -> endpoint (created, or updated when it exists)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smray.errors import UserError
from smray.registry.records import ModelVersion


def deploy(
    client: Any,  # a boto3 "sagemaker" client
    name: str,
    version: ModelVersion,
    role_arn: str,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
) -> str:
    """Returns "created" or "updated". Names carry the version and a time stamp, so a re-deploy never
    collides with the model and config the endpoint still uses."""
    if not version.artifact.startswith("s3://"):
        raise UserError(f"{version.group}/{version.version}'s artifact {version.artifact} is not in S3")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    model_name = f"{name}-v{version.version}-{stamp}"
    client.create_model(
        ModelName=model_name,
        PrimaryContainer={"Image": version.image, "ModelDataUrl": version.artifact},
        ExecutionRoleArn=role_arn,
    )
    client.create_endpoint_config(
        EndpointConfigName=model_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": instance_type,
                "InitialInstanceCount": instance_count,
            }
        ],
    )
    if _exists(client, name):
        client.update_endpoint(EndpointName=name, EndpointConfigName=model_name)
        return "updated"
    client.create_endpoint(EndpointName=name, EndpointConfigName=model_name)
    return "created"


def _exists(client: Any, name: str) -> bool:
    try:
        client.describe_endpoint(EndpointName=name)
    except client.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":  # SageMaker's "Could not find endpoint"
            return False
        raise
    return True
