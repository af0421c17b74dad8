"""SageMaker Model Registry through the same calls, against moto."""

import json

import boto3
import pytest
from moto import mock_aws

from smray.errors import UserError
from smray.registry.records import Approval
from smray.registry.sagemaker import SageMakerRegistry


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        sm.create_model_package_group(ModelPackageGroupName="housing")
        for rmse in ("5100", "4900"):
            sm.create_model_package(
                ModelPackageGroupName="housing",
                ModelApprovalStatus="PendingManualApproval",
                InferenceSpecification={
                    "Containers": [
                        {"Image": "123.dkr.ecr/smray:1", "ModelDataUrl": f"s3://b/{rmse}/model.tar.gz"}
                    ],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
                ModelMetrics={
                    "ModelQuality": {
                        "Statistics": {
                            "ContentType": "application/json",
                            "S3Uri": f"s3://b/{rmse}/evaluation.json",
                        }
                    }
                },
            )
        yield sm


def test_list_describe_approve_reject(client):
    registry = SageMakerRegistry(client)
    assert registry.groups() == ["housing"]
    versions = registry.versions("housing")
    assert [v.version for v in versions] == [2, 1]
    assert versions[0].artifact == "s3://b/4900/model.tar.gz"
    assert versions[0].metrics == {"statistics_uri": "s3://b/4900/evaluation.json"}
    assert registry.set_status("housing", 2, Approval.APPROVED).status is Approval.APPROVED
    assert registry.set_status("housing", 1, Approval.REJECTED).status is Approval.REJECTED
    assert registry.latest("housing", Approval.APPROVED).version == 2
    with pytest.raises(UserError, match="housing/9"):
        registry.set_status("housing", 9, Approval.APPROVED)


def test_a_classifier_s_metrics_are_its_statistics_in_s3_and_its_gate_the_one_it_passed(client):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    evaluation = {"binary_classification_metrics": {"accuracy": {"value": 0.93, "standard_deviation": 0.01}}}
    s3.put_object(Bucket="bkt", Key="churn/evaluation.json", Body=json.dumps(evaluation).encode())
    client.create_model_package_group(ModelPackageGroupName="churn")
    client.create_model_package(
        ModelPackageGroupName="churn",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123.dkr.ecr/smray:1", "ModelDataUrl": "s3://b/churn/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": "s3://bkt/churn/evaluation.json"}
            }
        },
        CustomerMetadataProperties={"gate_metric": "accuracy"},
    )
    (version,) = SageMakerRegistry(client, s3).versions("churn")
    assert version.gate_metric() == "accuracy" and version.metric("accuracy") == 0.93
    assert version.metrics["statistics_uri"] == "s3://bkt/churn/evaluation.json"
    s3.delete_object(Bucket="bkt", Key="churn/evaluation.json")  # gone: still listed, without its values
    (version,) = SageMakerRegistry(client, s3).versions("churn")
    assert version.metric("accuracy") is None and version.gate_metric() is None
