"""SageMaker Feature Store through boto3: the control plane (create or check a feature group) and the
runtime's PutRecord, many calls at once, with retry and exponential backoff on throttling. Every record
that still fails is counted and reported, and the step fails: nothing is lost silently.

PutRecord reaches the offline store (S3) minutes later. `wait_offline` polls the group's offline prefix
until the records written are there, so the next step never reads a partial store.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from smray.errors import PlatformError, UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.retry import NotYet, retry

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = {"ThrottlingException", "ServiceUnavailable", "InternalFailure", "RequestThrottled"}
# S3 lists LastModified to the whole second, and the job's clock is not S3's: a file written after the
# wait began may show a time up to a second (plus the clocks' skew) before it.
LISTED_TIME_SLACK_MS = 1000 + 5000


@dataclass(frozen=True)
class PutReport:
    offered: int
    written: int
    failed: int
    retries: int
    errors: dict[str, int]  # error code -> records that finally failed with it


def records(frame: pd.DataFrame, group: FeatureGroupDefinition) -> list[list[dict[str, str]]]:
    """Rows as PutRecord's Record lists: a number or a text (a String feature's) as its text; a missing
    value (NaN, None) is left out, as the Feature Store wants it."""
    names = [group.record_id, group.event_time, *group.value_types()]
    out = []
    for row in frame[names].itertuples(index=False, name=None):
        out.append(
            [
                {"FeatureName": n, "ValueAsString": _text(v)}
                for n, v in zip(names, row, strict=True)
                if not _missing(v)
            ]
        )
    return out


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else repr(value)
    return str(value)


class SageMakerFeatureStore:
    CONCURRENCY = 16  # PutRecord calls in flight per host

    def __init__(
        self,
        sagemaker: Any,
        runtime: Any,
        s3: Any | None = None,
        concurrency: int = CONCURRENCY,
        max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sagemaker = sagemaker
        self.runtime = runtime
        self.s3 = s3
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.sleep = sleep

    def describe(self, name: str) -> FeatureGroupDefinition | None:
        try:
            return FeatureGroupDefinition.from_description(
                self.sagemaker.describe_feature_group(FeatureGroupName=name)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ResourceNotFound", "ResourceNotFoundException"):
                return None
            raise

    def ensure_group(
        self, wanted: FeatureGroupDefinition, offline_s3_uri: str, role_arn: str, timeout_s: float = 600
    ) -> FeatureGroupDefinition:
        existing = self.describe(wanted.name)
        if existing is not None:
            existing.check_matches(wanted)
            return existing
        self.sagemaker.create_feature_group(
            FeatureGroupName=wanted.name,
            RecordIdentifierFeatureName=wanted.record_id,
            EventTimeFeatureName=wanted.event_time,
            FeatureDefinitions=wanted.feature_definitions(),
            OnlineStoreConfig={"EnableOnlineStore": True},
            OfflineStoreConfig={"S3StorageConfig": {"S3Uri": offline_s3_uri}},
            RoleArn=role_arn,
        )

        def created() -> FeatureGroupDefinition:
            status = self.sagemaker.describe_feature_group(FeatureGroupName=wanted.name).get(
                "FeatureGroupStatus"
            )
            found = self.describe(wanted.name) if status == "Created" else None
            if status == "CreateFailed":
                raise PlatformError(f"feature group {wanted.name} could not be created (status {status})")
            if found is None:
                raise NotYet(f"status {status}")
            return found

        return self._poll(created, f"feature group {wanted.name} becoming ready", timeout_s, 1.0, 15.0)

    def put(self, group: FeatureGroupDefinition, frame: pd.DataFrame) -> PutReport:
        batch = records(frame, group)
        with ThreadPoolExecutor(self.concurrency) as pool:
            outcomes = list(pool.map(lambda r: self._put_one(group.name, r), batch))
        errors: dict[str, int] = {}
        for code, _ in outcomes:
            if code:
                errors[code] = errors.get(code, 0) + 1
        failed = sum(errors.values())
        return PutReport(len(batch), len(batch) - failed, failed, sum(r for _, r in outcomes), errors)

    def _put_one(self, group_name: str, record: list[dict[str, str]]) -> tuple[str | None, int]:
        """(error code or None, retries used). Backoff: full jitter, 0.1 s doubling to 10 s."""
        for attempt in range(self.max_attempts):
            try:
                self.runtime.put_record(FeatureGroupName=group_name, Record=record)
                return None, attempt
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code not in RETRYABLE or attempt == self.max_attempts - 1:
                    log.debug("PutRecord failed for good: %s", code)
                    return code, attempt
                self.sleep(random.uniform(0, min(10.0, 0.1 * 2**attempt)))
        return "RetriesExhausted", self.max_attempts

    def wait_offline(
        self, group: FeatureGroupDefinition, since_ms: int, expected: int, timeout_s: float
    ) -> int:
        """Poll the offline prefix until files written since `since_ms` hold `expected` records."""
        if self.s3 is None:
            raise UserError("waiting for the offline store needs an S3 client")
        bucket, _, prefix = group.offline_uri.removeprefix("s3://").partition("/")
        seen: dict[str, int] = {}
        listed_since_ms = since_ms - LISTED_TIME_SLACK_MS

        def all_visible() -> int:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    fresh = obj["LastModified"].timestamp() * 1000 >= listed_since_ms
                    if key.endswith(".parquet") and fresh and key not in seen:
                        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                        seen[key] = pq.read_metadata(io.BytesIO(body)).num_rows
            total = sum(seen.values())
            if total < expected:
                log.info("offline store: %d of %d records visible; polling again", total, expected)
                raise NotYet(f"only {total} of {expected} records reached the offline store")
            return total

        return self._poll(
            all_visible, f"the records of {group.name} reaching its offline store", timeout_s, 2.0, 60.0
        )

    def _poll(self, check: Callable[[], T], what: str, timeout_s: float, first_s: float, max_s: float) -> T:
        """`check()` until it stops raising NotYet; AWS's own errors are not retried here (boto3 has)."""
        return retry(
            check,
            what=what,
            timeout_s=timeout_s,
            retry_on=(),
            first_delay_s=first_s,
            max_delay_s=max_s,
            sleep=self.sleep,
        )
