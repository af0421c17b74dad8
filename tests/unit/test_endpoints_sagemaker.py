"""Deploying to SageMaker against moto: create, then update (moto has no UpdateEndpoint: an explicit
fake records that call and passes everything else to moto)."""

import boto3
import pytest
from moto import mock_aws

from smray.errors import UserError
from smray.registry.records import Approval, ModelVersion
from smray.workstation.endpoints import sagemaker


def _version(n: int) -> ModelVersion:
    return ModelVersion(
        "housing", n, Approval.APPROVED, "2026-11-22T00:00:00+00:00", f"s3://b/{n}/model.tar.gz", "img:1"
    )


class WithUpdateEndpoint:
    def __init__(self, client):
        self.client = client
        self.updates = []

    def update_endpoint(self, **kwargs):
        self.updates.append(kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_create_then_update(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = WithUpdateEndpoint(boto3.client("sagemaker", region_name="us-east-1"))
        role = "arn:aws:iam::123456789012:role/smray"
        assert sagemaker.deploy(client, "houses", _version(1), role) == "created"
        config = client.describe_endpoint(EndpointName="houses")["EndpointConfigName"]
        model = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0][
            "ModelName"
        ]
        assert (
            client.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"]
            == "s3://b/1/model.tar.gz"
        )

        assert sagemaker.deploy(client, "houses", _version(2), role) == "updated"
        (update,) = client.updates
        assert update["EndpointName"] == "houses" and update["EndpointConfigName"].startswith("houses-v2-")
        assert client.describe_endpoint_config(EndpointConfigName=update["EndpointConfigName"])


def test_an_artifact_outside_s3_is_refused():
    local = ModelVersion("housing", 1, Approval.APPROVED, "t", "/tmp/model.tar.gz", "img:1")
    with pytest.raises(UserError, match="is not in S3"):
        sagemaker.deploy(object(), "houses", local, "role")
