"""Stand-ins for the AWS endpoints a SageMaker job of smray calls, reachable from the job's containers:
moto's server (S3, SageMaker's control plane) and a Feature Store runtime (moto has none) that keeps the
online store in memory and writes the offline store to S3 as SageMaker does: Parquet files under the
group's ResolvedOutputS3Uri, partitioned by event time, with write_time, api_invocation_time and
is_deleted. Both listen on the Docker bridge's gateway, the host's address as containers see it."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
ARROW_TYPES = {"Integral": pa.int64(), "Fractional": pa.float64(), "String": pa.string()}


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: containers on any local network reach it. Older
    engines list only the subnet; the bridge's gateway is then its first address."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"],
        check=True,
        capture_output=True,
        text=True,
    )
    config = json.loads(out.stdout)[0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@dataclass
class Endpoints:
    s3_and_sagemaker: str  # http://host:port of moto's server
    featurestore_runtime: str

    def environment(self) -> dict[str, str]:
        """What a process needs to call these instead of AWS (botocore's per-service variables)."""
        return {**CREDENTIALS, **self.job_environment()}

    def job_environment(self) -> dict[str, str]:
        """What a job's containers need beside the credentials, which local mode passes them itself (on
        AWS, a job gets its role's)."""
        return {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.s3_and_sagemaker,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.s3_and_sagemaker,
            "AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME": self.featurestore_runtime,
        }

    def client(self, service: str):
        url = (
            self.featurestore_runtime
            if service == "sagemaker-featurestore-runtime"
            else self.s3_and_sagemaker
        )
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


SOFT_DELETED = "__soft_deleted"  # marks an online record that DeleteRecord soft-deleted


def batch_get_answer(online: dict[str, dict[str, dict[str, str]]], request: dict) -> dict:
    """BatchGetRecord's answer from online records (group -> id -> feature -> text): a record that is not
    online, or soft-deleted, is left out, as AWS does."""
    found = []
    for identifiers in request["Identifiers"]:
        group = identifiers["FeatureGroupName"]
        for rid in identifiers["RecordIdentifiersValueAsString"]:
            record = online.get(group, {}).get(rid)
            if record is not None and SOFT_DELETED not in record:
                fields = [{"FeatureName": k, "ValueAsString": v} for k, v in record.items()]
                found.append(
                    {"FeatureGroupName": group, "RecordIdentifierValueAsString": rid, "Record": fields}
                )
    return {"Records": found, "Errors": [], "UnprocessedIdentifiers": []}


def list_records_answer(records: dict[str, dict[str, str]], request: dict) -> dict:
    """ListRecords' page of a group's online record ids (soft-deleted ones with IncludeSoftDeletedRecords),
    with a NextToken while more remain."""
    ids = [i for i, r in records.items() if request.get("IncludeSoftDeletedRecords") or SOFT_DELETED not in r]
    start, size = int(request.get("NextToken") or 0), int(request.get("MaxResults") or 100)
    answer: dict = {"RecordIdentifiers": ids[start : start + size]}
    if start + size < len(ids):
        answer["NextToken"] = str(start + size)
    return answer


def send_json(handler: BaseHTTPRequestHandler, payload: dict) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FeatureStoreRuntime(BaseHTTPRequestHandler):
    """PutRecord (PUT /FeatureGroup/<name>), DeleteRecord (DELETE, soft: the online record keeps its id
    and the deletion's time, its values gone; an is_deleted row offline), BatchGetRecord and ListRecords
    of the online store. A record or deletion with an event time older than the online one goes to the
    offline store only, as on AWS."""

    endpoints: ClassVar[Endpoints]
    lock = threading.Lock()
    online: ClassVar[dict[str, dict[str, dict[str, str]]]] = {}  # group -> id -> record
    pending: ClassVar[dict[str, list[dict]]] = {}  # group -> offline rows not yet in S3
    calls: ClassVar[dict[str, int]] = {}  # operation -> count

    def do_PUT(self) -> None:
        group = self.path.rsplit("/", 1)[-1]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        record = {f["FeatureName"]: f["ValueAsString"] for f in body["Record"]}
        self._change(group, record, deleted=False)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        with FeatureStoreRuntime.lock:
            if self.path == "/BatchGetRecord":
                answer = batch_get_answer(FeatureStoreRuntime.online, request)
            else:  # /FeatureGroup/<name>/ListRecords
                group = self.path.split("/")[2]
                answer = list_records_answer(FeatureStoreRuntime.online.get(group, {}), request)
        send_json(self, answer)

    def do_DELETE(self) -> None:
        url = urlparse(self.path)
        group = url.path.rsplit("/", 1)[-1]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self._change(
            group, {"__id": query["RecordIdentifierValueAsString"], "__time": query["EventTime"]}, True
        )

    def _change(self, group: str, record: dict[str, str], deleted: bool) -> None:
        id_name, time_name, _ = _group_columns(self.endpoints, group)
        if deleted:
            record = {id_name: record["__id"], time_name: record["__time"]}
        rid, when = record[id_name], _event_time(record[time_name])
        now = datetime.now(UTC)
        with FeatureStoreRuntime.lock:
            FeatureStoreRuntime.calls["DeleteRecord" if deleted else "PutRecord"] = (
                FeatureStoreRuntime.calls.get("DeleteRecord" if deleted else "PutRecord", 0) + 1
            )
            current = FeatureStoreRuntime.online.setdefault(group, {}).get(rid)
            if current is None or _event_time(current[time_name]) <= when:
                FeatureStoreRuntime.online[group][rid] = (
                    dict(record, **{SOFT_DELETED: "1"}) if deleted else record
                )
            row = dict(record, write_time=now, api_invocation_time=now, is_deleted=deleted)
            FeatureStoreRuntime.pending.setdefault(group, []).append(row)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _event_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_GROUPS: dict[str, tuple[str, str, dict[str, str], str]] = {}


def _group_columns(endpoints: Endpoints, group: str) -> tuple[str, str, dict[str, str]]:
    """(record id name, event time name, feature -> type) of a group, from SageMaker's description."""
    if group not in _GROUPS:
        d = endpoints.client("sagemaker").describe_feature_group(FeatureGroupName=group)
        types = {f["FeatureName"]: f["FeatureType"] for f in d["FeatureDefinitions"]}
        uri = d["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
        _GROUPS[group] = (d["RecordIdentifierFeatureName"], d["EventTimeFeatureName"], types, uri)
    id_name, time_name, types, _ = _GROUPS[group]
    return id_name, time_name, types


def flush_offline(endpoints: Endpoints) -> int:
    """Writes the pending rows of every group to its offline store, one file a group and event hour."""
    with FeatureStoreRuntime.lock:
        pending = {g: rows for g, rows in FeatureStoreRuntime.pending.items() if rows}
        FeatureStoreRuntime.pending = {}
    s3 = endpoints.client("s3")
    for group, rows in pending.items():
        _, time_name, types = _group_columns(endpoints, group)
        uri = _GROUPS[group][3]
        frame = pd.DataFrame(rows)
        hours = pd.to_datetime(frame[time_name].map(_event_time), unit="s", utc=True).dt.floor("h")
        for hour, part in frame.groupby(hours):
            columns = {
                name: pa.array(part[name].where(part[name].notna(), None), type=ARROW_TYPES[kind])
                if name in part
                else pa.nulls(len(part), ARROW_TYPES[kind])
                for name, kind in types.items()
            }
            for extra in ("write_time", "api_invocation_time"):
                columns[extra] = pa.array(part[extra], type=pa.timestamp("us", tz="UTC"))
            columns["is_deleted"] = pa.array(part["is_deleted"], type=pa.bool_())
            body = io.BytesIO()
            pq.write_table(pa.table(columns), body)
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            key = (
                f"{prefix}/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/"
                f"{stamp}_{secrets.token_hex(8)}.parquet"
            )
            s3.put_object(Bucket=bucket, Key=key, Body=body.getvalue())
    return sum(len(rows) for rows in pending.values())


@contextmanager
def _missing_groups_not_found() -> Iterator[None]:
    """moto answers DescribeFeatureGroup for a missing group with a KeyError (HTTP 500); AWS with
    ResourceNotFound, which ingest takes as "create it". One explicit fix of one moto gap."""
    from moto.sagemaker.exceptions import ResourceNotFound
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.describe_feature_group

    def describe(self: SageMakerModelBackend, feature_group_name: str) -> dict:
        try:
            return original(self, feature_group_name)
        except KeyError:
            raise ResourceNotFound(f"Resource Not Found: feature group {feature_group_name}") from None

    SageMakerModelBackend.describe_feature_group = describe
    try:
        yield
    finally:
        SageMakerModelBackend.describe_feature_group = original


@contextmanager
def process_environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment, then as it was: set before Ray starts, whose workers
    inherit it, for code that finds AWS through the AWS_ENDPOINT_URL_* variables."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def aws_stand_ins(host: str | None = None) -> Iterator[Endpoints]:
    """moto's server and the Feature Store runtime on `host` (default the bridge's gateway, for jobs in
    containers); the runtime's offline rows reach S3 within a second (AWS takes up to 15 minutes: ingest
    waits for them either way)."""
    host = host or bridge_gateway()
    moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    moto.start()
    _, moto_port = moto.get_host_and_port()
    # moto's servers in one process share its backends: what an earlier module made (model packages,
    # feature groups, buckets) would still be there.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{moto_port}/moto-api/reset", method="POST"))
    runtime = ThreadingHTTPServer((host, 0), FeatureStoreRuntime)
    endpoints = Endpoints(f"http://{host}:{moto_port}", f"http://{host}:{runtime.server_address[1]}")
    FeatureStoreRuntime.endpoints = endpoints
    FeatureStoreRuntime.online, FeatureStoreRuntime.pending, FeatureStoreRuntime.calls = {}, {}, {}
    _GROUPS.clear()
    stop = threading.Event()

    def flush_every_second() -> None:
        while not stop.wait(1.0):
            flush_offline(endpoints)

    threads = [
        threading.Thread(target=runtime.serve_forever, daemon=True),
        threading.Thread(target=flush_every_second, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        with _missing_groups_not_found():
            yield endpoints
    finally:
        stop.set()
        runtime.shutdown()
        moto.stop()
