"""Which feature store a step uses, as a small value every Ray worker can carry: the local store under a
folder, or SageMaker Feature Store in the job's AWS account. Both are used the same way: ensure the
group, then write batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.feature_store.record_state import Ids
from smray.feature_store.sagemaker import PutReport, SageMakerFeatureStore

BACKENDS = ("local", "sagemaker")


@dataclass(frozen=True)
class StoreSpec:
    backend: str = "local"
    root: str = ""  # local: the store's folder
    role_arn: str = ""  # sagemaker: the role the Feature Store writes the offline store with
    offline_s3_uri: str = ""  # sagemaker: where a new group's offline store goes

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(
                f"feature store backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.backend == "local" and not self.root:
            raise UserError("the local feature store needs a folder (--store)")
        if self.backend == "sagemaker" and not (self.role_arn and self.offline_s3_uri.startswith("s3://")):
            raise UserError("the SageMaker feature store needs --role-arn and an s3:// --offline-s3-uri")

    def local(self) -> LocalFeatureStore:
        return LocalFeatureStore(Path(self.root.removeprefix("file://")))

    def sagemaker(self) -> SageMakerFeatureStore:
        import boto3
        from botocore.config import Config

        # Throttling is retried by the store itself, with its own backoff and failure count; botocore
        # still retries what the store never sees (a reset connection, a 5xx), a few times. One pooled
        # connection per writing thread: with botocore's 10, 6 of 16 threads waited for a connection.
        concurrency = SageMakerFeatureStore.CONCURRENCY
        runtime = boto3.client(
            "sagemaker-featurestore-runtime",
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=concurrency
            ),
        )
        return SageMakerFeatureStore(boto3.client("sagemaker"), runtime, boto3.client("s3"), concurrency)

    def ensure_group(self, wanted: FeatureGroupDefinition) -> FeatureGroupDefinition:
        if self.backend == "local":
            return self.local().ensure_group(wanted)
        return self.sagemaker().ensure_group(wanted, self.offline_s3_uri, self.role_arn)

    def write(
        self,
        group: FeatureGroupDefinition,
        frame: pd.DataFrame,
        batch_rows: int,
        times_given: bool,
        digests: np.ndarray | None = None,
        ids_distinct: bool = False,
    ) -> dict[str, Any]:
        """Write a host's share; counts of what happened (failed: records lost after every retry).
        `times_given`: the event times came from the data (else the run's time, which an unchanged
        record does not take on the local store). The local store commits the share at once: all of it
        or nothing. SageMaker takes it in batches of `batch_rows`, each retried record by record; on both,
        a record whose online row holds its values already is not written again.
        `digests` (the local store's digests of the rows) and `ids_distinct` (no id repeats): what the
        caller knows already."""
        if self.backend == "local":
            result = self.local().put(
                group, frame, keep_unchanged_times=not times_given, digests=digests, ids_distinct=ids_distinct
            )
            return {
                "offered": result.offered,
                "written": result.written_offline,
                "already_present": result.already_present,
                "failed": 0,
                "errors": {},
            }
        totals = _totals()
        store = self.sagemaker()
        for start in range(0, len(frame), batch_rows):
            _add(totals, store.put(group, frame.iloc[start : start + batch_rows], times_given))
        return totals

    def delete_absent(
        self,
        group: FeatureGroupDefinition,
        present: Ids,
        event_time: float,
        ids_distinct: bool = False,
        live: list[str] | None = None,
    ) -> dict[str, Any]:
        """A snapshot's deletions, the same on both stores: every live record whose id is not in `present`
        (the whole input, just written) is deleted as of `event_time`. Counts as `write`'s. `live`:
        SageMaker's online record ids, when the caller listed them already."""
        if self.backend == "local":
            deleted = self.local().delete_absent(group, present, event_time, ids_distinct)
            return {"offered": deleted, "written": deleted, "already_present": 0, "failed": 0, "errors": {}}
        store = self.sagemaker()
        totals = _totals()
        _add(
            totals,
            store.delete_absent(group, present, event_time, store.live_ids(group) if live is None else live),
        )
        return totals


def _totals() -> dict[str, Any]:
    """SageMaker's counts; `keys`: the record versions written, which its offline store will show."""
    return {"offered": 0, "written": 0, "already_present": 0, "failed": 0, "errors": {}, "keys": []}


def _add(totals: dict[str, Any], report: PutReport) -> None:
    totals["offered"] += report.offered
    totals["written"] += report.written
    totals["already_present"] += report.already_present
    totals["failed"] += report.failed
    totals["keys"].extend(report.keys)
    for code, n in report.errors.items():
        totals["errors"][code] = totals["errors"].get(code, 0) + n
