import boto3
import pytest
from moto import mock_aws

from smray.workstation.ecr import credentials, ensure_repository


@pytest.fixture
def ecr(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("ecr")


def test_repository_is_created_once_and_then_reused(ecr):
    uri = ensure_repository(ecr, "smray")
    assert uri.endswith(".dkr.ecr.eu-west-1.amazonaws.com/smray")
    assert ensure_repository(ecr, "smray") == uri
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["smray"]


def test_credentials_decode_the_authorization_token(ecr):
    creds = credentials(ecr)
    assert creds.username == "AWS" and creds.password
    assert creds.registry.endswith(".dkr.ecr.eu-west-1.amazonaws.com")
    assert not creds.registry.startswith("http")
