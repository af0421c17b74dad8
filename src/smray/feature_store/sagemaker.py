"""SageMaker Feature Store through boto3: the control plane (create or check a feature group) and the
runtime's calls, many at once, with retry and exponential backoff on throttling. Every record that still
fails is counted and reported, and the step fails: nothing is lost silently.

The same store semantics as the local store: a record whose online row already holds its values (and,
with event times from the data, its time) is not written again (BatchGetRecord, 100 records a call);
a snapshot deletes the online records that left the input (ListRecords, then DeleteRecord, whose soft
delete appends an `is_deleted` row to the offline store, as the local store does).

PutRecord reaches the offline store (S3) minutes later. `wait_offline` polls the group's offline prefix
until the records written are there, so the next step never reads a partial store.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from smray.errors import PlatformError, UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.record_state import Ids, is_in
from smray.retry import NotYet, retry

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = {"ThrottlingException", "ServiceUnavailable", "InternalFailure", "RequestThrottled"}
# S3 lists LastModified to the whole second, and the job's clock is not S3's: a file written after the
# wait began may show a time up to a second (plus the clocks' skew) before it.
LISTED_TIME_SLACK_MS = 1000 + 5000


BATCH_GET_IDS = 100  # BatchGetRecord's most record identifiers per group and call
LIST_PAGE = 100  # ListRecords' most identifiers per page


Key = tuple[str, float]  # a record version: its id and event time


class RangedObject(io.RawIOBase):
    """An S3 object as a seekable file whose reads are ranged GETs: Parquet reads its footer and the
    columns it wants, not the whole file."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self.s3, self.bucket, self.key, self.size, self.position = s3, bucket, key, size, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}
        if whence not in bases or bases[whence] + offset < 0:
            raise ValueError(f"cannot seek to {offset} from {whence} in {self.key}")
        self.position = bases[whence] + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = self._get(min(self.size, self.position + len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self._get(self.size)

    def _get(self, end: int) -> bytes:
        """The bytes from here to `end`, in one ranged GET."""
        if end <= self.position:
            return b""
        answer = self.s3.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end - 1}"
        )
        data = answer["Body"].read()
        self.position += len(data)
        return data


@dataclass(frozen=True)
class Outcome:
    error: str | None  # the error code a call failed with for good, or None
    retries: int
    answer: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PutReport:
    offered: int
    written: int
    failed: int
    retries: int
    errors: dict[str, int]  # error code -> records that finally failed with it
    already_present: int = 0  # records whose online row holds their values already: not written
    keys: tuple[Key, ...] = ()  # the record versions written: what the offline store will show


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


def _report(offered: int, outcomes: list[Outcome], keys: list[Key], already_present: int = 0) -> PutReport:
    """The counts of `outcomes`, one per record's call; `keys[k]`: the record version of call k."""
    errors = dict(Counter(o.error for o in outcomes if o.error))
    failed = sum(errors.values())
    written = tuple(k for k, o in zip(keys, outcomes, strict=True) if not o.error)
    retries = sum(o.retries for o in outcomes)
    return PutReport(offered, len(outcomes) - failed, failed, retries, errors, already_present, written)


def _key(record: list[dict[str, str]], group: FeatureGroupDefinition) -> Key:
    fields = {f["FeatureName"]: f["ValueAsString"] for f in record}
    return fields[group.record_id], float(fields[group.event_time])  # the group's is Fractional


def unchanged(
    record: list[dict[str, str]],
    online: list[dict[str, str]] | None,
    group: FeatureGroupDefinition,
    times: bool,
) -> bool:
    """Whether a record's online row (GetRecord's list, None for none) holds its values: numbers compared
    as numbers (the store may spell 3 as 3.0), text as text, a missing value as missing; its event time
    too when `times` (the event times came from the data: a newer time is a new version)."""
    if online is None:
        return False
    mine = {f["FeatureName"]: f["ValueAsString"] for f in record}
    theirs = {f["FeatureName"]: f["ValueAsString"] for f in online}
    types = group.value_types() | ({group.event_time: "Fractional"} if times else {})
    for name, kind in types.items():
        a, b = mine.get(name), theirs.get(name)
        if a is None or b is None:
            if a is not b:
                return False
        elif a != b and (kind == "String" or float(a) != float(b)):
            return False
    return True


USER_ERRORS = {"AccessDeniedException", "AccessForbidden", "ValidationError", "ResourceNotFound"}


def _call_error(what: str, code: str) -> Exception:
    """A call that failed for good: the user's to fix (permissions, a missing group), else AWS's."""
    return (UserError if code in USER_ERRORS else PlatformError)(f"{what} failed: {code}")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else repr(value)
    return str(value)


class SageMakerFeatureStore:
    CONCURRENCY = 16  # Feature Store runtime calls in flight per host

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

    def put(self, group: FeatureGroupDefinition, frame: pd.DataFrame, times_given: bool = False) -> PutReport:
        """Write the rows whose online record does not hold them already (`times_given`: the event times
        came from the data, so a different time is a change too). A row no newer than its record's
        deletion is filed as history by AWS: `live_ids` after the writes finds such records."""
        batch = records(frame, group)
        ids = frame[group.record_id].astype(str).tolist()
        with ThreadPoolExecutor(self.concurrency) as pool:
            online = self._online_records(pool, group, ids)
            wanted, seen = [], set()
            for i, r in zip(ids, batch, strict=True):
                key = (i, *(f["ValueAsString"] for f in r))  # one batch's equal rows are one version
                if key not in seen and not unchanged(r, online.get(i), group, times_given):
                    wanted.append(r)
                seen.add(key)
            outcomes = list(
                pool.map(
                    lambda r: self._attempt(self.runtime.put_record, FeatureGroupName=group.name, Record=r),
                    wanted,
                )
            )
        keys = [_key(r, group) for r in wanted]
        return _report(len(batch), outcomes, keys, already_present=len(batch) - len(wanted))

    def live_ids(self, group: FeatureGroupDefinition) -> list[str]:
        """The ids of the group's online records (ListRecords, soft-deleted ones left out), every page
        retried as a record's call is."""
        found: list[str] = []
        token: dict[str, str] = {}
        while True:
            outcome = self._attempt(
                self.runtime.list_records,
                keep=True,
                FeatureGroupName=group.name,
                MaxResults=LIST_PAGE,
                **token,
            )
            if outcome.error:
                raise _call_error(f"listing the records of feature group {group.name}", outcome.error)
            found += outcome.answer.get("RecordIdentifiers", [])
            if not outcome.answer.get("NextToken"):
                return found
            token = {"NextToken": outcome.answer["NextToken"]}

    def delete_absent(
        self, group: FeatureGroupDefinition, present: Ids, event_time: float, live: list[str]
    ) -> PutReport:
        """DeleteRecord (soft: the record leaves the online store, an is_deleted row goes offline) of every
        `live` record whose id is not in `present`: the input was the whole table and these left it."""
        kept = is_in(pd.Series(live, dtype=str), present)
        absent = [i for i, k in zip(live, kept, strict=True) if not k]
        when = _text(float(event_time))
        with ThreadPoolExecutor(self.concurrency) as pool:
            outcomes = list(
                pool.map(
                    lambda i: self._attempt(
                        self.runtime.delete_record,
                        FeatureGroupName=group.name,
                        RecordIdentifierValueAsString=i,
                        EventTime=when,
                    ),
                    absent,
                )
            )
        return _report(len(absent), outcomes, [(i, float(when)) for i in absent])

    def _online_records(
        self, pool: ThreadPoolExecutor, group: FeatureGroupDefinition, ids: list[str]
    ) -> dict[str, list[dict[str, str]]]:
        """The online rows of these ids (those that have one), by BatchGetRecord calls in parallel."""
        distinct = list(dict.fromkeys(ids))
        chunks = [distinct[i : i + BATCH_GET_IDS] for i in range(0, len(distinct), BATCH_GET_IDS)]
        found: dict[str, list[dict[str, str]]] = {}
        for part in pool.map(lambda chunk: self._batch_get(group.name, chunk), chunks):
            found.update(part)
        return found

    def _batch_get(self, group_name: str, ids: list[str]) -> dict[str, list[dict[str, str]]]:
        """One BatchGetRecord of up to 100 ids; what it leaves unprocessed, or fails with a retryable
        error, is asked again with backoff."""
        found: dict[str, list[dict[str, str]]] = {}
        what = f"reading the online records of feature group {group_name}"
        for attempt in range(self.max_attempts):
            outcome = self._attempt(
                self.runtime.batch_get_record,
                keep=True,
                Identifiers=[{"FeatureGroupName": group_name, "RecordIdentifiersValueAsString": ids}],
            )
            if outcome.error:
                raise _call_error(what, outcome.error)
            answer = outcome.answer
            found.update({r["RecordIdentifierValueAsString"]: r["Record"] for r in answer.get("Records", [])})
            ids = [
                i
                for u in answer.get("UnprocessedIdentifiers", [])
                for i in u["RecordIdentifiersValueAsString"]
            ]
            for error in answer.get("Errors", []):
                if error.get("ErrorCode") not in RETRYABLE:
                    raise _call_error(
                        f"{what} ({error.get('RecordIdentifierValueAsString')!r})", error.get("ErrorCode", "")
                    )
                ids.append(error["RecordIdentifierValueAsString"])
            if not ids:
                return found
            self._back_off(attempt)
        raise PlatformError(f"{what}: {len(ids)} records stayed unprocessed after {self.max_attempts} calls")

    def _back_off(self, attempt: int) -> None:
        """Full jitter, 0.1 s doubling to 10 s."""
        self.sleep(random.uniform(0, min(10.0, 0.1 * 2**attempt)))

    def _attempt(self, operation: Callable[..., dict], /, *, keep: bool = False, **kwargs: Any) -> Outcome:
        """One call, throttling and transient errors retried with backoff (`_back_off`); what still fails
        is an outcome with its error code, never an exception. `keep`: the answer
        is kept (a read's; a write's would only take memory, 200k of them a batch)."""
        for attempt in range(self.max_attempts):
            try:
                answer = operation(**kwargs)
                return Outcome(None, attempt, answer if keep else {})
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code not in RETRYABLE or attempt == self.max_attempts - 1:
                    log.debug("%s failed for good: %s", getattr(operation, "__name__", "a call"), code)
                    return Outcome(code, attempt)
                self._back_off(attempt)
        return Outcome("RetriesExhausted", self.max_attempts)

    def wait_offline(
        self, group: FeatureGroupDefinition, since_ms: int, written: list[Key], timeout_s: float
    ) -> int:
        """Poll the offline prefix until the files written since `since_ms` hold every record version in
        `written` (record id, event time), this ingest's own: rows another writer put there meanwhile do
        not count. Only a file's footer and its two key columns are read (ranged GETs), not the file."""
        if self.s3 is None:
            raise UserError("waiting for the offline store needs an S3 client")
        if not written:
            return 0
        bucket, _, prefix = group.offline_uri.removeprefix("s3://").partition("/")
        wanted, found, read = set(written), set(), set()
        listed_since_ms = since_ms - LISTED_TIME_SLACK_MS

        def all_visible() -> int:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    fresh = obj["LastModified"].timestamp() * 1000 >= listed_since_ms
                    if key.endswith(".parquet") and fresh and key not in read:
                        found.update(self._keys_in(bucket, key, obj["Size"], group) & wanted)
                        read.add(key)
            if len(found) < len(wanted):
                log.info("offline store: %d of %d records visible; polling again", len(found), len(wanted))
                raise NotYet(f"only {len(found)} of {len(wanted)} records reached the offline store")
            return len(found)

        return self._poll(
            all_visible, f"the records of {group.name} reaching its offline store", timeout_s, 2.0, 60.0
        )

    def _keys_in(self, bucket: str, key: str, size: int, group: FeatureGroupDefinition) -> set[Key]:
        """The (record id, event time) of an offline file's rows."""
        columns = [group.record_id, group.event_time]
        with pq.ParquetFile(RangedObject(self.s3, bucket, key, size)) as parquet:
            table = parquet.read(columns=columns)
        times = [float(t) for t in table[group.event_time].to_pylist()]
        return set(zip((str(i) for i in table[group.record_id].to_pylist()), times, strict=True))

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
