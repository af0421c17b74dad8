"""The SageMaker backend against moto (control plane, S3) and a local fake of the Feature Store runtime
API (moto has no PutRecord): a real HTTP server on 127.0.0.1 speaking the runtime's REST protocol, which
throttles some calls so that retry and backoff are exercised for real."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from smray import schema
from smray.errors import PlatformError, UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.sagemaker import RangedObject, SageMakerFeatureStore, unchanged
from smray.workstation import datagen
from tests.support.aws_standins import batch_get_answer, list_records_answer, send_json

ROLE = "arn:aws:iam::123456789012:role/feature-store"


class FakeRuntime(BaseHTTPRequestHandler):
    """PUT /FeatureGroup/<name>: stores the record. Every third record id is throttled on its first two
    attempts; ids in `reject` get a ValidationError (not retryable)."""

    attempts: ClassVar[dict[str, int]] = {}
    reject: ClassVar[set[str]] = set()
    stored: ClassVar[dict[str, list]] = {}
    lock = threading.Lock()

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        record = {f["FeatureName"]: f["ValueAsString"] for f in body["Record"]}
        rid = record["record_id"]
        with FakeRuntime.lock:
            FakeRuntime.attempts[rid] = FakeRuntime.attempts.get(rid, 0) + 1
            throttled = int(rid) % 3 == 0 and FakeRuntime.attempts[rid] <= 2
        if throttled:
            return self._error(400, "ThrottlingException", "Rate exceeded")
        if rid in FakeRuntime.reject:
            return self._error(400, "ValidationError", "bad record")
        with FakeRuntime.lock:
            FakeRuntime.stored.setdefault(self.path.rsplit("/", 1)[-1], []).append(record)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        """BatchGetRecord and ListRecords of the online store: each id's last stored record."""
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        with FakeRuntime.lock:
            online = {g: {r["record_id"]: r for r in rows} for g, rows in FakeRuntime.stored.items()}
        if self.path == "/BatchGetRecord":
            return send_json(self, batch_get_answer(online, request))
        send_json(self, list_records_answer(online.get(self.path.split("/")[2], {}), request))

    def _error(self, status, code, message):
        payload = json.dumps({"__type": code, "message": message}).encode()
        self.send_response(status)
        self.send_header("x-amzn-ErrorType", code)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class SageMakerAsAWS:
    """moto's sagemaker client, except that describing a missing feature group fails the way AWS does
    (ResourceNotFound) instead of with moto's internal KeyError: an explicit fake for one moto gap."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def describe_feature_group(self, **kwargs):
        try:
            return self._client.describe_feature_group(**kwargs)
        except KeyError:
            error = {"Error": {"Code": "ResourceNotFound", "Message": "not found"}}
            raise ClientError(error, "DescribeFeatureGroup") from None


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    FakeRuntime.attempts, FakeRuntime.stored, FakeRuntime.reject = {}, {}, set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRuntime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with mock_aws():
        runtime = boto3.client(
            "sagemaker-featurestore-runtime",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            config=Config(retries={"total_max_attempts": 1}),  # our own retry is under test
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="offline", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        sagemaker = SageMakerAsAWS(boto3.client("sagemaker"))
        yield SageMakerFeatureStore(sagemaker, runtime, s3, concurrency=8, sleep=lambda s: None)
    server.shutdown()


def group_definition():
    return FeatureGroupDefinition.from_schema("housing", schema.housing())


def test_group_is_created_then_checked(aws):
    created = aws.ensure_group(group_definition(), "s3://offline/fs", ROLE)
    assert created.record_id == "record_id" and created.value_types()["YEAR_BUILT"] == "Integral"
    assert aws.ensure_group(group_definition(), "s3://offline/fs", ROLE).name == "housing"
    other = schema.housing().to_dict()
    other["features"] = other["features"][1:]
    with pytest.raises(UserError, match="YEAR_BUILT is in the group but not in the data"):
        aws.ensure_group(
            FeatureGroupDefinition.from_schema("housing", schema.parse(other)), "s3://offline/fs", ROLE
        )


def test_put_retries_throttling_and_writes_every_record(aws):
    group = aws.ensure_group(group_definition(), "s3://offline/fs", ROLE)
    frame = datagen.housing_frame(300, seed=2)
    report = aws.put(group, frame)
    assert report.written == 300 and report.failed == 0 and report.retries == 200
    stored = FakeRuntime.stored["housing"]
    assert sorted(int(r["record_id"]) for r in stored) == list(range(300))
    assert stored[0]["YEAR_BUILT"].isdigit()


def test_string_features_and_labels_are_strings_and_a_missing_value_is_left_out(aws):
    churn = schema.parse(
        {
            "name": "churn",
            "target": "churned",
            "task": "binary",
            "features": [{"name": "state", "type": "string"}, {"name": "calls", "type": "integral"}],
        }
    )
    group = aws.ensure_group(FeatureGroupDefinition.from_schema("churn", churn), "s3://offline/fs", ROLE)
    described = aws.sagemaker.describe_feature_group(FeatureGroupName="churn")["FeatureDefinitions"]
    assert {d["FeatureName"]: d["FeatureType"] for d in described}["state"] == "String"
    assert group.value_types() == {"churned": "String", "state": "String", "calls": "Integral"}
    frame = pd.DataFrame(
        {
            "record_id": ["1", "2", "4"],
            "event_time": 5.0,
            "churned": pd.array(["yes", "no", "1"], dtype="str"),
            "state": pd.Series(["CA", None, "nan"], dtype=object),  # "nan" is a state's text, not missing
            "calls": [2.0, np.nan, 0.0],
        }
    )
    assert aws.put(group, frame).written == 3
    stored = {r["record_id"]: r for r in FakeRuntime.stored["churn"]}
    assert stored["1"] == {"record_id": "1", "event_time": "5", "churned": "yes", "state": "CA", "calls": "2"}
    assert stored["2"] == {"record_id": "2", "event_time": "5", "churned": "no"}  # missing: left out
    assert stored["4"]["state"] == "nan" and stored["4"]["churned"] == "1"


def test_a_record_the_online_store_holds_already_is_not_written_again(aws):
    """As on the local store: an unchanged record keeps its version (a run's later time is no change),
    one edited value is one record written; with event times from the data a newer time is a change."""
    group = aws.ensure_group(group_definition(), "s3://offline/fs", ROLE)
    frame = datagen.housing_frame(40, seed=2).assign(event_time=100.0)
    assert aws.put(group, frame).written == 40
    again = frame.assign(event_time=200.0)
    again.loc[7, "YEAR_BUILT"] += 1
    report = aws.put(group, again)
    assert (report.written, report.already_present) == (1, 39)
    assert FakeRuntime.stored["housing"][-1]["record_id"] == str(frame.loc[7, "record_id"])
    assert aws.put(group, again, times_given=True).written == 39  # the others' time 200 is new


def test_unchanged_compares_numbers_as_numbers_and_text_as_text():
    churn = FeatureGroupDefinition(
        "churn", "record_id", "event_time", (("churned", "String"), ("calls", "Fractional"))
    )

    def record(**values):
        return [{"FeatureName": k, "ValueAsString": v} for k, v in values.items()]

    mine = record(record_id="1", event_time="5", churned="01", calls="2")
    assert unchanged(mine, record(record_id="1", event_time="9", churned="01", calls="2.0"), churn, False)
    assert not unchanged(mine, record(record_id="1", event_time="9", churned="01", calls="2.0"), churn, True)
    assert not unchanged(mine, record(record_id="1", event_time="5", churned="1", calls="2"), churn, False)
    assert not unchanged(mine, record(record_id="1", event_time="5", churned="01"), churn, False)  # missing
    assert not unchanged(mine, None, churn, False)


def test_records_that_fail_for_good_are_counted(aws):
    group = aws.ensure_group(group_definition(), "s3://offline/fs", ROLE)
    FakeRuntime.reject = {"4", "7"}
    report = aws.put(group, datagen.housing_frame(20, seed=2))
    assert report.failed == 2 and report.errors == {"ValidationError": 2} and report.written == 18


def offline_group():
    return FeatureGroupDefinition.from_description(
        {
            **group_definition().to_description(),
            "OfflineStoreConfig": {"S3StorageConfig": {"ResolvedOutputS3Uri": "s3://offline/fs/data"}},
        }
    )


def land(aws, frame, name):
    """An offline file as SageMaker writes them, holding `frame`'s rows."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame.assign(record_id=frame["record_id"].astype(str))), buf)
    aws.s3.put_object(Bucket="offline", Key=f"fs/data/year=2025/{name}.parquet", Body=buf.getvalue())


def keys(frame):
    return list(zip(frame["record_id"].astype(str), frame["event_time"].astype(float), strict=True))


def test_waits_until_the_offline_store_holds_the_records(aws):
    frames = [datagen.housing_frame(50, seed=1, first_id=50 * k) for k in range(4)]
    polls = []

    def land_later(seconds):  # the "sleep" between polls: SageMaker writes one more file each time
        polls.append(seconds)
        land(aws, frames[len(polls)], f"part-{len(polls)}")

    land(aws, frames[0], "part-0")
    aws.sleep = land_later
    written = [k for f in frames[:3] for k in keys(f)]
    assert aws.wait_offline(offline_group(), since_ms=0, written=written, timeout_s=60) == 150
    assert len(polls) == 2 and polls[0] < polls[1]  # backoff between polls
    with pytest.raises(PlatformError, match="only 150 of 250 records reached the offline store"):
        aws.sleep = lambda s: None
        more = keys(datagen.housing_frame(50, seed=1, first_id=1000))
        aws.wait_offline(
            offline_group(), since_ms=0, written=[*written, *keys(frames[3]), *more], timeout_s=0
        )


def test_rows_another_writer_put_meanwhile_do_not_count(aws):
    """Another ingest's rows landing in the offline store while this one waits (or this group's own
    earlier rows, listed within the clock slack) are not this ingest's records: it keeps waiting."""
    mine = datagen.housing_frame(30, seed=1)
    land(aws, datagen.housing_frame(30, seed=2, first_id=500), "theirs")  # as many rows, other records
    land(aws, mine.assign(event_time=mine["event_time"] - 3600), "earlier")  # the same ids, older versions
    with pytest.raises(PlatformError, match="only 0 of 30 records reached the offline store"):
        aws.wait_offline(offline_group(), since_ms=0, written=keys(mine), timeout_s=0)
    land(aws, mine, "mine")
    assert aws.wait_offline(offline_group(), since_ms=0, written=keys(mine), timeout_s=0) == 30


def test_the_wait_reads_a_file_s_footer_and_key_columns_not_the_whole_file(aws):
    frame = datagen.housing_frame(20_000, seed=1)
    land(aws, frame, "big")
    body = aws.s3.get_object(Bucket="offline", Key="fs/data/year=2025/big.parquet")["Body"].read()
    metadata = pq.read_metadata(io.BytesIO(body))
    key_columns = sum(
        metadata.row_group(g).column(c).total_compressed_size
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
        if metadata.schema.column(c).name in ("record_id", "event_time")
    )
    fetched = []
    get_object = aws.s3.get_object

    def counted(**kwargs):
        answer = get_object(**kwargs)
        fetched.append(answer["ContentLength"])
        return answer

    aws.s3.get_object = counted
    assert aws.wait_offline(offline_group(), since_ms=0, written=keys(frame), timeout_s=0) == 20_000
    footer_read = 64 * 1024  # Parquet's first read from the end holds the footer
    assert sum(fetched) <= key_columns + footer_read < len(body), (sum(fetched), key_columns, len(body))


def test_a_ranged_object_reads_as_a_file_and_refuses_a_seek_before_its_start(aws):
    aws.s3.put_object(Bucket="offline", Key="blob", Body=bytes(range(200)))
    blob = RangedObject(aws.s3, "offline", "blob", 200)
    assert blob.read(3) == bytes([0, 1, 2]) and blob.tell() == 3
    assert blob.seek(-2, io.SEEK_END) == 198 and blob.read() == bytes([198, 199])  # the rest, one GET
    assert blob.read(5) == b""
    with pytest.raises(ValueError):
        blob.seek(-1)


def test_a_file_written_in_the_second_the_wait_began_counts(aws):
    """S3 lists LastModified to the second (".000Z"): a file written 0.6 s after the wait's start shows
    an earlier time than that start. Found by tests/aws: ingest waited out its timeout."""
    time.sleep(1 - time.time() % 1 + 0.2)  # 0.2 s into a second
    since_ms = int(time.time() * 1000)
    frame = datagen.housing_frame(30, seed=1)
    land(aws, frame, "part-0")
    listed = aws.s3.list_objects_v2(Bucket="offline", Prefix="fs/data/")["Contents"][0]["LastModified"]
    assert listed.timestamp() * 1000 < since_ms  # what S3 says of a file written after the wait began
    assert aws.wait_offline(offline_group(), since_ms=since_ms, written=keys(frame), timeout_s=0) == 30


def test_every_writing_thread_has_a_connection_and_network_errors_are_retried(monkeypatch):
    from smray.feature_store.backends import StoreSpec

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    store = StoreSpec("sagemaker", role_arn=ROLE, offline_s3_uri="s3://offline/fs").sagemaker()
    config = store.runtime.meta.config
    assert config.max_pool_connections >= store.concurrency
    assert config.retries["total_max_attempts"] > 1  # a reset connection never reaches the store's retry
