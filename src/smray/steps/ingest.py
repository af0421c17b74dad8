"""`ingest`: raw CSV/Parquet files -> a feature group, in parallel on every host of the job.

Two phases, so bad input leaves nothing behind: first every host reads and checks its own share of the
files (disjoint: whole files, or row slices when there are fewer files than hosts); only when every share
passed, and no (record id, event time) pair appears twice in the whole input, does each host write its
share in batches. The local store commits each batch atomically and is readable at once, so the next step
cannot race the writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smray import paths, ray_tasks, tables
from smray import schema as schema_mod
from smray.errors import UserError
from smray.feature_store.backends import BACKENDS, StoreSpec
from smray.feature_store.definition import FeatureGroupDefinition
from smray.quality import check as check_quality
from smray.ray_bootstrap.resource_config import ResourceConfig, discover
from smray.schema import Schema

log = logging.getLogger(__name__)

# Data without an event-time column is one snapshot at this time, so that a re-run is idempotent.
DEFAULT_EVENT_TIME = "2000-01-01T00:00:00Z"
BATCH_ROWS = 200_000


@dataclass(frozen=True)
class Unit:
    """A share of the input: the whole file (parts 1) or its rows part, part+parts, part+2*parts, ..."""

    path: str
    part: int = 0
    parts: int = 1


def parser() -> argparse.ArgumentParser:
    proc = paths.ml_root() / "processing"
    p = argparse.ArgumentParser(prog="smray-entrypoint ingest", description=__doc__)
    p.add_argument("--input", type=Path, default=proc / "input" / "raw", help="folder of CSV/Parquet files")
    p.add_argument(
        "--store", default=str(proc / "feature-store"), help="local feature store root (or file://)"
    )
    p.add_argument("--feature-group", default="housing", help="feature group name")
    p.add_argument("--schema", type=Path, help="schema JSON (default: the built-in housing schema)")
    p.add_argument(
        "--event-time",
        default=DEFAULT_EVENT_TIME,
        help=f"event time for data without an event-time column (default: {DEFAULT_EVENT_TIME})",
    )
    p.add_argument("--quarantine", type=Path, default=proc / "quarantine", help="where rule-breaking rows go")
    p.add_argument("--report", type=Path, default=proc / "report" / "ingest.json", help="summary JSON")
    p.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help="rows per committed batch")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="feature store (default: local)")
    p.add_argument("--role-arn", default="", help="sagemaker: role for a new group's offline store")
    p.add_argument(
        "--offline-s3-uri", default="", help="sagemaker: s3:// prefix for a new group's offline store"
    )
    p.add_argument(
        "--wait-offline-s",
        type=float,
        default=1800,
        help="sagemaker: wait up to this long until the records are in the offline store (0: do not wait)",
    )
    return p


def plan_units(files: list[Path], hosts: int) -> list[list[Unit]]:
    """Disjoint shares, one per host, balanced by file size (largest first onto the lightest host)."""
    if len(files) >= hosts:
        units = [Unit(str(f)) for f in files]
    else:
        units = [Unit(str(f), k, hosts) for f in files for k in range(hosts)]
    sizes = {u: Path(u.path).stat().st_size / u.parts for u in units}
    shares: list[list[Unit]] = [[] for _ in range(hosts)]
    load = [0.0] * hosts
    for unit in sorted(units, key=lambda u: (-sizes[u], u.path, u.part)):
        lightest = load.index(min(load))
        shares[lightest].append(unit)
        load[lightest] += sizes[unit]
    return shares


@dataclass
class Prepared:
    records: pd.DataFrame  # record id, event time, value columns: ready to write
    quarantine: pd.DataFrame  # rule-breaking rows as read, with source_file, source_row, violated_rules
    rows_read: int


def prepare(units: list[Unit], schema: Schema, default_event_time: float) -> Prepared:
    """Read and check a share. Raises UserError on the first bad file."""
    records, quarantined, rows_read = [], [], 0
    for unit in units:
        path = Path(unit.path)
        raw = tables.read(path)
        if unit.parts > 1:
            raw = raw.iloc[unit.part :: unit.parts]
        rows_read += len(raw)
        values = tables.numeric(raw, schema, path)
        if schema.record_id in raw.columns:
            ids = raw[schema.record_id].astype(str)
            if raw[schema.record_id].isna().any():
                raise UserError(f"{path}: column {schema.record_id} has empty record ids")
        else:
            ids = pd.Series(path.name + ":" + raw.index.astype(str), index=raw.index)
        if schema.event_time in raw.columns:
            times = tables.event_times(raw[schema.event_time], path, schema.event_time)
        else:
            times = pd.Series(default_event_time, index=raw.index)
        verdict = check_quality(values, schema, str(path))
        frame = pd.concat([ids.rename(schema.record_id), times.rename(schema.event_time), values], axis=1)
        records.append(frame[verdict.keep.to_numpy()])
        if verdict.quarantined:
            bad = raw[~verdict.keep.to_numpy()].astype(str).copy()
            bad["source_file"] = str(path)
            bad["source_row"] = bad.index + 2
            bad["violated_rules"] = verdict.reasons[~verdict.keep]
            quarantined.append(bad)
    return Prepared(
        records=pd.concat(records, ignore_index=True),
        quarantine=pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(),
        rows_read=rows_read,
    )


def duplicate_keys(ids: np.ndarray, times: np.ndarray) -> list[tuple[str, float]]:
    keys = pd.DataFrame({"id": ids, "time": times})
    dup = keys[keys.duplicated(keep=False)].drop_duplicates()
    return list(dup.itertuples(index=False, name=None))


class IngestWorker:
    """One per host (a Ray actor pinned to it): holds its checked share between the two phases."""

    def __init__(self) -> None:
        self._prepared: Prepared | None = None
        self._host = discover().current_host

    def check(self, units: list[Unit], schema_dict: dict, default_event_time: float) -> dict:
        schema = schema_mod.parse(schema_dict)
        self._prepared = prepare(units, schema, default_event_time)
        rec = self._prepared.records
        return {
            "host": self._host,
            "rows_read": self._prepared.rows_read,
            "quarantined": len(self._prepared.quarantine),
            "ids": rec[schema.record_id].to_numpy(),
            "times": rec[schema.event_time].to_numpy(),
        }

    def write(
        self, spec: StoreSpec, group: FeatureGroupDefinition, quarantine_dir: str, batch_rows: int
    ) -> dict:
        assert self._prepared is not None, "check() must run first"
        totals = spec.write(group, self._prepared.records, batch_rows)
        if not self._prepared.quarantine.empty:
            out = Path(quarantine_dir)
            out.mkdir(parents=True, exist_ok=True)
            self._prepared.quarantine.to_parquet(out / f"quarantine-{self._host}.parquet", index=False)
        return {"host": self._host, **totals}


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = time.monotonic()
    schema = schema_mod.load(opts.schema) if opts.schema else schema_mod.housing()
    default_time = float(tables.event_times(pd.Series([opts.event_time]), "--event-time", "event time")[0])
    if opts.batch_rows < 1:
        raise UserError("--batch-rows must be at least 1")
    spec = StoreSpec(opts.backend, opts.store, opts.role_arn, opts.offline_s3_uri)
    files = tables.list_files(opts.input)
    nodes = sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeManagerAddress"])
    shares = plan_units(files, len(nodes))
    actor_class = ray.remote(num_cpus=0)(IngestWorker)
    workers = [
        actor_class.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    ]
    busy = [(w, s) for w, s in zip(workers, shares, strict=True) if s]
    log.info("ingest: %d files over %d hosts", len(files), len(busy))
    checks = ray_tasks.get([w.check.remote(s, schema.to_dict(), default_time) for w, s in busy])

    ids = np.concatenate([c["ids"] for c in checks])
    times = np.concatenate([c["times"] for c in checks])
    dups = duplicate_keys(ids, times)
    if dups:
        shown = ", ".join(f"{i}@{t:g}" for i, t in dups[:5])
        raise UserError(
            f"{len(dups)} (record id, event time) pair(s) appear more than once in the input, e.g. {shown}: "
            "a feature store keeps one record per id and time"
        )
    group = spec.ensure_group(FeatureGroupDefinition.from_schema(opts.feature_group, schema))
    since_ms = int(time.time() * 1000)
    writes = ray_tasks.get(
        [w.write.remote(spec, group, str(opts.quarantine), opts.batch_rows) for w, _ in busy]
    )
    failed = sum(w["failed"] for w in writes)
    if failed:
        codes: dict[str, int] = {}
        for w in writes:
            for code, n in w["errors"].items():
                codes[code] = codes.get(code, 0) + n
        raise UserError(
            f"{failed} of {sum(w['offered'] for w in writes)} records were not written to feature group "
            f"{group.name} after retries ({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})"
        )
    if spec.backend == "sagemaker" and opts.wait_offline_s > 0:
        # PutRecord lands in the offline store minutes later: the next step must not read before.
        spec.sagemaker().wait_offline(group, since_ms, sum(w["written"] for w in writes), opts.wait_offline_s)
    elapsed = time.monotonic() - started
    report = summarize(checks, writes, group, elapsed, files)
    opts.report.parent.mkdir(parents=True, exist_ok=True)
    opts.report.write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report), flush=True)


def summarize(
    checks: list[dict], writes: list[dict], group: FeatureGroupDefinition, elapsed: float, files: list[Path]
) -> dict:
    rows_read = sum(c["rows_read"] for c in checks)
    return {
        "feature_group": group.name,
        "offline_store": group.offline_uri,
        "files": len(files),
        "rows_read": rows_read,
        "quarantined": sum(c["quarantined"] for c in checks),
        "written": sum(w["written"] for w in writes),
        "already_present": sum(w["already_present"] for w in writes),
        "seconds": round(elapsed, 3),
        "rows_per_second": round(rows_read / elapsed, 1) if elapsed > 0 else None,
        "hosts": {w["host"]: w["offered"] for w in writes},
    }


def format_summary(report: dict) -> str:
    return (
        f"ingest: {report['rows_read']} rows from {report['files']} file(s) into feature group "
        f"{report['feature_group']}: {report['written']} new, {report['already_present']} already "
        f"present, {report['quarantined']} quarantined; "
        f"{report['seconds']:.1f} s ({report['rows_per_second']:,.0f} rows/s) on "
        f"{len(report['hosts'])} host(s)"
    )
