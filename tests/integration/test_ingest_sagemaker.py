"""Ingest into SageMaker Feature Store from Ray workers in other processes: moto's server on 127.0.0.1 for
the control plane and the fake Feature Store runtime (moto has none), reached through the standard
AWS_ENDPOINT_URL_* variables, so the step's code is exactly what runs against AWS."""

import socket
import threading
from http.server import ThreadingHTTPServer

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from smray import schema
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.workstation import datagen
from tests.support.aws_standins import process_environment
from tests.unit.test_feature_store_sagemaker import ROLE, FakeRuntime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def aws_endpoints():
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port)
    moto.start()
    runtime = ThreadingHTTPServer(("127.0.0.1", 0), FakeRuntime)
    threading.Thread(target=runtime.serve_forever, daemon=True).start()
    env = {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{moto_port}",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{moto_port}",
        "AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME": f"http://127.0.0.1:{runtime.server_address[1]}",
    }
    with process_environment(env):
        yield
    runtime.shutdown()
    moto.stop()


@pytest.fixture(scope="module")
def cluster(aws_endpoints, ray_cluster):
    return ray_cluster


def options(tmp_path, **kw):
    opts = ingest.parser().parse_args(
        [
            "--backend",
            "sagemaker",
            "--role-arn",
            ROLE,
            "--offline-s3-uri",
            "s3://offline/fs",
            "--wait-offline-s",
            "0",
            "--input",
            str(tmp_path / "raw"),
            "--report",
            str(tmp_path / "report.json"),
            "--quarantine",
            str(tmp_path / "q"),
        ]
    )
    for k, v in kw.items():
        setattr(opts, k, v)
    return opts


@pytest.fixture(scope="module")
def group(cluster):
    """The group exists up front: moto's DescribeFeatureGroup of a missing group is an internal error."""
    definition = FeatureGroupDefinition.from_schema("housing", schema.housing())
    boto3.client("sagemaker").create_feature_group(
        FeatureGroupName="housing",
        RecordIdentifierFeatureName="record_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=definition.feature_definitions(),
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": "s3://offline/fs"}},
        RoleArn=ROLE,
    )


def test_ingest_puts_every_record_with_retries(group, tmp_path):
    FakeRuntime.attempts, FakeRuntime.stored, FakeRuntime.reject = {}, {}, set()
    datagen.generate(tmp_path / "raw", rows=600, files=2, fmt="csv", seed=4)
    ingest.run(local(), options(tmp_path))
    assert sorted(int(r["record_id"]) for r in FakeRuntime.stored["housing"]) == list(range(600))
    assert FakeRuntime.attempts["3"] == 3  # throttled twice, then written


def test_lost_records_fail_the_step_and_are_counted(group, tmp_path):
    FakeRuntime.attempts, FakeRuntime.stored, FakeRuntime.reject = {}, {}, {"10", "11", "12"}
    datagen.generate(tmp_path / "raw", rows=100, files=1, fmt="csv", seed=4)
    with pytest.raises(UserError, match=r"3 of 100 records were not written .* \(ValidationError: 3\)"):
        ingest.run(local(), options(tmp_path))
    assert not (tmp_path / "report.json").exists()


def test_a_table_of_text_features_and_labels_is_put_as_strings(cluster, tmp_path):
    """The generated churn table (text features, empty cells, yes/no labels): its group's String types,
    and each record's text as written, a missing value left out of the record."""
    FakeRuntime.attempts, FakeRuntime.stored, FakeRuntime.reject = {}, {}, set()
    generated = datagen.generate(tmp_path / "raw", rows=300, files=1, fmt="csv", seed=4, task="binary")
    churn = schema.load(generated.schema)
    boto3.client("sagemaker").create_feature_group(
        FeatureGroupName="churn",
        RecordIdentifierFeatureName="record_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=FeatureGroupDefinition.from_schema("churn", churn).feature_definitions(),
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": "s3://offline/fs"}},
        RoleArn=ROLE,
    )
    ingest.run(local(), options(tmp_path, schema=generated.schema, feature_group="churn"))
    table = pd.read_csv(generated.files[0], dtype=str, keep_default_na=False).set_index("record_id")
    stored = {r["record_id"]: r for r in FakeRuntime.stored["churn"]}
    assert len(stored) == 300
    for rid, record in stored.items():
        row = table.loc[rid]
        assert {k: v for k, v in record.items() if k in ("churned", "state", "plan")} == {
            k: row[k] for k in ("churned", "state", "plan") if row[k] != ""
        }
    assert any("state" not in r for r in stored.values())  # an empty cell: no feature in the record
