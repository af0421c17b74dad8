"""`ingest`: raw CSV/Parquet files -> a feature group, in parallel on every host of the job.

Two phases, so bad input leaves nothing behind: first every host reads and checks its own share of the
files (disjoint: whole files, or row slices when there are fewer files than hosts); only when every share
passed, and no record id appears twice at one event time with different values in the whole input, is
anything written: into the local store by the head alone, one commit per host's share (on AWS each host
has a disk of its own, whose upload would overwrite the others'), into SageMaker Feature Store by every
host for its share, in batches; a snapshot's deletions by the head, last. The local store's commits are
atomic and readable at once; SageMaker's offline store is waited for; so the next step cannot race the
writes. Both stores keep the same records from the same input.

Numbers are stored as numbers, text (string features, a classification target's labels) as text; an
empty cell is a missing value, and a row without a target breaks the rule "<target> present" (`quality`).

What the store holds afterwards, in one sentence: every record's latest content. Rows without an
event-time column take this run's time; a record whose values did not change is not written again (it
keeps its time); a changed record is a new version; in `snapshot` mode (the input is the whole table) a
record that is no longer in the input, or whose new row was quarantined, is deleted.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from smray import schema as schema_mod
from smray import tables
from smray.contracts import ingest as contract
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig, discover
from smray.entrypoints import ray_tasks
from smray.errors import UserError
from smray.feature_store.backends import BACKENDS, StoreSpec
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.record_state import Ids, distinct, ids, is_in, record_digests
from smray.quality import check as check_quality
from smray.schema import Schema

log = logging.getLogger(__name__)

BATCH_ROWS = 200_000
# Files a host reads and checks at once (no more than its cores): each holds its raw rows until checked,
# so a host of many cores does not hold many large files at a time.
FILES_IN_FLIGHT = 4
MODES = ("snapshot", "upsert")


@dataclass(frozen=True)
class Unit:
    """A share of the input: the whole file (parts 1) or its rows part, part+parts, part+2*parts, ..."""

    path: str
    part: int = 0
    parts: int = 1


def parser() -> argparse.ArgumentParser:
    proc = processing_root()
    p = argparse.ArgumentParser(prog="smray-entrypoint ingest", description=__doc__)
    p.add_argument("--input", type=Path, default=proc / contract.RAW, help="folder of CSV/Parquet files")
    p.add_argument(
        "--store", default=str(proc / contract.STORE), help="local feature store root (or file://)"
    )
    p.add_argument("--feature-group", default="housing", help="feature group name")
    p.add_argument("--schema", type=Path, help="schema JSON (default: the built-in housing schema)")
    p.add_argument(
        "--event-time",
        help="event time for data without an event-time column (default: the time of this run; an "
        "unchanged record keeps the time it was stored with)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="snapshot",
        help="snapshot (default): the input is the whole table, records no longer in it are deleted; "
        "upsert: the input adds and changes records, deletes none. The same on both stores",
    )
    p.add_argument(
        "--quarantine", type=Path, default=proc / contract.QUARANTINE, help="where rule-breaking rows go"
    )
    p.add_argument(
        "--report", type=Path, default=proc / contract.REPORT / contract.REPORT_FILE, help="summary JSON"
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=BATCH_ROWS,
        help="sagemaker: records per batch of PutRecord calls (the local store commits a share at once)",
    )
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


def host_files(input_dir: str) -> list[tuple[str, int]]:
    """This host's input files, relative to the input folder, with their sizes. None is no error here:
    with ShardedByS3Key, a host of a job with fewer files than hosts gets no file."""
    root = Path(input_dir)
    return [(f.relative_to(root).as_posix(), f.stat().st_size) for f in tables.table_files(root)]


def plan_hosts(listings: dict[str, list[tuple[str, int]]], root: Path) -> dict[str, list[Unit]]:
    """Each host's share of the input, from what each host holds. The same files on every host (an input
    FullyReplicated, or one folder every container mounts, as in local mode): disjoint shares balanced by
    size (`plan_units`). Files spread over the hosts (ShardedByS3Key: every object on one host): each host
    reads its own. Anything else is an input no host can share out."""
    held = [set(files) for files in listings.values()]
    if all(h == held[0] for h in held):
        shares = plan_units([(root / rel, size) for rel, size in sorted(held[0])], len(listings))
        return dict(zip(listings, shares, strict=True))
    names = [rel for files in listings.values() for rel, _ in files]
    if len(names) != len(set(names)):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UserError(
            f"the hosts hold different input files, some on several hosts ({', '.join(twice[:3])}): "
            "an input must be on every host (FullyReplicated) or spread over them (ShardedByS3Key)"
        )
    return {node: [Unit(str(root / rel)) for rel, _ in files] for node, files in listings.items()}


def plan_units(files: list[tuple[Path, int]], hosts: int) -> list[list[Unit]]:
    """Disjoint shares of `files` (path, size), one per host, balanced by size (largest first onto the
    lightest host); with fewer files than hosts, each file's rows are sliced over the hosts."""
    size_of = {str(f): size for f, size in files}
    if len(files) >= hosts:
        units = [Unit(str(f)) for f, _ in files]
    else:
        units = [Unit(str(f), k, hosts) for f, _ in files for k in range(hosts)]
    sizes = {u: size_of[u.path] / u.parts for u in units}
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
    digests: np.ndarray  # the records' `record_digests`
    quarantine: pd.DataFrame  # rule-breaking rows as read, with source_file, source_row, violated_rules
    rows_read: int
    times_given: bool  # the event times came from the data
    places: pd.DataFrame  # per record: file (index into `files`) and row, to name where a record came from
    files: list[str]  # input files relative to the input folder

    @classmethod
    def join(cls, parts: list[Prepared], files: list[str]) -> Prepared:
        quarantined = [p.quarantine for p in parts if len(p.quarantine)]
        return cls(
            records=pd.concat([p.records for p in parts], ignore_index=True),
            digests=np.concatenate([p.digests for p in parts]),
            quarantine=pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(),
            rows_read=sum(p.rows_read for p in parts),
            times_given=all(p.times_given for p in parts),
            places=pd.concat([p.places for p in parts], ignore_index=True),
            files=files,
        )


def prepare(
    units: list[Unit], schema: Schema, default_event_time: float, root: Path, threads: int = 1
) -> Prepared:
    """Read and check a share, `threads` units at a time (reading, parsing and hashing release the GIL).
    Raises UserError on the share's first bad file, in the order of `units`."""
    files = sorted({Path(u.path).relative_to(root).as_posix() for u in units})
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(lambda u: prepare_unit(u, schema, default_event_time, root, files), units))
    return Prepared.join(parts, files)


def prepare_unit(
    unit: Unit, schema: Schema, default_event_time: float, root: Path, files: list[str]
) -> Prepared:
    """Read and check one unit of a share (`files`: the share's files, which `places` indexes)."""
    path = Path(unit.path)
    relative = path.relative_to(root).as_posix()
    raw = tables.read(path)
    if unit.parts > 1:
        raw = raw.iloc[unit.part :: unit.parts]
    values = tables.values(raw, schema, path)
    if schema.record_id in raw.columns:
        record_ids = raw[schema.record_id]
        if record_ids.isna().any():
            raise UserError(f"{path}: column {schema.record_id} has empty record ids")
        if not pd.api.types.is_integer_dtype(record_ids.dtype):  # integers stay numbers: `id_keys`
            record_ids = record_ids.astype(str)
    else:  # the path inside the input and the row: stable while the file's rows keep their order
        record_ids = pd.Series(relative + ":" + raw.index.astype(str), index=raw.index)
    times_given = schema.event_time in raw.columns
    if times_given:
        times = tables.event_times(raw[schema.event_time], path, schema.event_time)
    else:
        times = pd.Series(default_event_time, index=raw.index)
    verdict = check_quality(
        values.assign(**{schema.event_time: times}),
        schema,
        str(path),
        not_finite=tables.not_finite(values, raw),
    )
    frame = pd.concat([record_ids.rename(schema.record_id), times.rename(schema.event_time), values], axis=1)
    keep = verdict.keep.to_numpy()
    records = frame[keep]
    quarantine = pd.DataFrame()
    if verdict.quarantined:
        quarantine = raw[~keep].astype(str).copy()
        quarantine["source_file"] = relative
        quarantine["source_row"] = quarantine.index + 2
        quarantine["violated_rules"] = verdict.reasons[~verdict.keep]
    return Prepared(
        records=records,
        digests=record_digests(records, schema.value_columns),
        quarantine=quarantine,
        rows_read=len(raw),
        times_given=times_given,
        places=pd.DataFrame({"file": files.index(relative), "row": raw.index[keep] + 2}),
        files=files,
    )


@dataclass(frozen=True)
class Repeats:
    """Rows of the input whose record id and event time another row has too."""

    duplicates: int  # rows equal to an earlier one (same id, time and values): one record, written once
    conflict: str | None  # one line naming a record id with two contents at one time, if there is one


def find_repeats(keys: pd.DataFrame) -> Repeats:
    """`keys`: columns id, time, digest, and file and row (where each record came from)."""
    repeated = keys[keys.duplicated(["id", "time"], keep=False)]
    variants = repeated.drop_duplicates(["id", "time", "digest"])
    duplicates = len(repeated) - len(variants)
    clashing = variants[variants.duplicated(["id", "time"], keep=False)]
    if clashing.empty:
        return Repeats(duplicates, None)  # the same row twice: one record
    first = clashing[clashing["id"] == clashing["id"].iloc[0]].sort_values(["file", "row"])
    places = [f"{file} row {row}" for file, row in zip(first["file"], first["row"], strict=True)]
    return Repeats(
        duplicates,
        f"record id {first['id'].iloc[0]} has different values at {places[0]} and at {places[1]} "
        f"({clashing['id'].nunique()} such record id(s)): a record has one content per event time",
    )


def check_share(
    units: list[Unit], schema_dict: dict, default_event_time: float, root: str, cores: int
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Read and check one host's share, on that host (`ray_tasks.on_host`): its keys, for the checks across
    the whole input; its records; its rule-breaking rows. The records and rows stay on that host (in its
    object store, or in the job's process on the head) until every share passed."""
    # Ray caps a worker at one thread (OMP_NUM_THREADS=1, which Arrow follows too); this is its host's
    # only work, so Arrow reads with the host's every core while it runs.
    threads = pa.cpu_count()
    pa.set_cpu_count(cores)
    try:
        schema = schema_mod.parse(schema_dict)
        prepared = prepare(units, schema, default_event_time, Path(root), min(cores, FILES_IN_FLIGHT))
    finally:
        pa.set_cpu_count(threads)
    rec = prepared.records
    keys = {
        "host": discover().current_host,
        "rows_read": prepared.rows_read,
        "quarantined": len(prepared.quarantine),
        "times_given": prepared.times_given,
        "ids": id_keys(rec[schema.record_id]),
        "times": rec[schema.event_time].to_numpy(),
        "digests": prepared.digests,
        "files": np.array(prepared.files, dtype=object)[prepared.places["file"].to_numpy()],
        "rows": prepared.places["row"].to_numpy(),
    }
    return keys, rec, prepared.quarantine


def id_keys(column: pd.Series) -> Ids:
    """A share's record ids, to compare across the input: integers as numbers (hashed 4x faster than
    their text, which is what the store keeps), anything else as text."""
    return column.to_numpy() if pd.api.types.is_integer_dtype(column.dtype) else ids(column)


def all_ids(shares: list[Ids]) -> Ids:
    """Every share's ids in one array: numbers if every share's are, else text (the number 7 is the id
    "7")."""
    if all(isinstance(share, np.ndarray) for share in shares):
        return np.concatenate(shares)
    return ids(pd.concat([pd.Series(ids(share)) for share in shares], ignore_index=True))


def keep_quarantine(quarantine: pd.DataFrame, quarantine_dir: str, host: str) -> None:
    """A share's rule-breaking rows, in its host's own file (hosts may not share a disk)."""
    out = Path(quarantine_dir)
    out.mkdir(parents=True, exist_ok=True)
    quarantine.to_parquet(out / f"quarantine-{host}.parquet", index=False)


def write_share(
    spec: StoreSpec, group: FeatureGroupDefinition, records: pd.DataFrame, batch_rows: int, times_given: bool
) -> dict:
    """A share written by its own host (SageMaker Feature Store: every host puts its records)."""
    return {"host": discover().current_host, **spec.write(group, records, batch_rows, times_given)}


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    import ray

    started = time.monotonic()
    schema = schema_mod.load(opts.schema) if opts.schema else schema_mod.housing()
    run_time = time.time()
    default_time = tables.single_event_time(opts.event_time, "--event-time") if opts.event_time else run_time
    if opts.batch_rows < 1:
        raise UserError("--batch-rows must be at least 1")
    spec = StoreSpec(opts.backend, opts.store, opts.role_arn, opts.offline_s3_uri)
    cores = ray_tasks.host_cores()
    listed = ray_tasks.settle([ray_tasks.on_host(n, host_files, str(opts.input)) for n in cores])
    listings = dict(zip(cores, listed, strict=True))
    files = sorted({rel for held in listings.values() for rel, _ in held})
    if not files:
        tables.list_files(opts.input)  # says what is wrong: no folder, or no CSV or Parquet file in it
    here = ray.get_runtime_context().get_node_id()
    # This host's share last: it is read in this process, after the other hosts' tasks have started.
    busy = sorted(
        ((node, s) for node, s in plan_hosts(listings, opts.input).items() if s), key=lambda b: b[0] == here
    )
    log.info("ingest: %d files over %d hosts", len(files), len(busy))
    shared = [
        ray_tasks.on_host(
            node, check_share, s, schema.to_dict(), default_time, str(opts.input), cores[node], returns=3
        )
        for node, s in busy
    ]
    checks = ray_tasks.settle([keys for keys, _, _ in shared])
    present = all_ids([c["ids"] for c in checks])
    repeats = Repeats(0, None)
    ids_distinct = distinct(present)
    if not ids_distinct:  # only then are the other key columns needed
        repeats = find_repeats(
            pd.DataFrame(
                {k: np.concatenate([c[k + "s"] for c in checks]) for k in ("time", "digest", "file", "row")}
            ).assign(id=present)
        )
    if repeats.conflict:
        raise UserError(repeats.conflict)
    group = spec.ensure_group(FeatureGroupDefinition.from_schema(opts.feature_group, schema))
    since_ms = int(time.time() * 1000)
    ray_tasks.settle(
        [
            ray_tasks.on_host(node, keep_quarantine, rows, str(opts.quarantine), c["host"])
            for (node, _), (_, _, rows), c in zip(busy, shared, checks, strict=True)
            if c["quarantined"]
        ]
    )
    if opts.mode == "snapshot" and not len(present):
        raise UserError(
            f"every row of the input was quarantined ({sum(c['quarantined'] for c in checks)}, kept in "
            f"{opts.quarantine}): a snapshot of no rows would delete every record of feature group "
            f"{group.name}; nothing was written"
        )
    records = [refs[1] for refs in shared]
    del shared  # the quarantined rows are kept: their objects may go
    if spec.backend == "local":
        writes = write_local(spec, group, schema, records, checks, opts.batch_rows, ids_distinct)
    else:
        writes = ray_tasks.settle(
            [
                ray_tasks.on_host(node, write_share, spec, group, share, opts.batch_rows, c["times_given"])
                for (node, _), share, c in zip(busy, records, checks, strict=True)
            ]
        )
    _require_every_record_written(writes, group)
    # SageMaker's shares stay on their hosts for records that come back (the local store's went as written)
    shares = list(zip(busy, records, checks, strict=True)) if spec.backend == "sagemaker" else []
    deleted = reconcile(spec, group, opts, shares, present, run_time, ids_distinct, writes, since_ms)
    elapsed = time.monotonic() - started
    duplicates = repeats.duplicates
    report = summarize(checks, writes, group, elapsed, files) | {
        "mode": opts.mode,
        "deleted": deleted,
        "duplicates": duplicates,  # the same record twice in the input: written once
    }
    # A row twice in the input is one record: counted unchanged by the store that wrote it once, or
    # written twice where two hosts held it (SageMaker: each host writes its share; the same key twice).
    sent = [k for w in writes for k in w.get("keys", ())]
    written_twice = len(sent) - len(set(sent))
    report["written"] -= written_twice
    report["already_present"] -= duplicates - written_twice
    opts.report.parent.mkdir(parents=True, exist_ok=True)
    opts.report.write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report), flush=True)


def write_local(
    spec: StoreSpec,
    group: FeatureGroupDefinition,
    schema: Schema,
    records: list,
    checks: list[dict],
    batch_rows: int,
    ids_distinct: bool,
) -> list[dict]:
    """Every share into the local store, by one writer, here on the head: on AWS every host has a disk of
    its own, and all hosts upload their store folder to one S3 prefix, where the last upload would win.
    (The store takes one writer at a time anyway; reading and checking stay spread over the hosts.)"""
    spec.local().save_schema(group.name, schema)
    # The checks' digests, when taken over the group's columns in its order (a group made earlier may
    # order them otherwise).
    same_order = list(group.value_types()) == schema.value_columns
    writes = []
    for c in checks:
        [share] = ray_tasks.settle([records.pop(0)])
        digests = c["digests"] if same_order else None
        writes.append(
            {
                "host": c["host"],
                **spec.write(group, share, batch_rows, c["times_given"], digests, ids_distinct),
            }
        )
        del share  # and its object: one share in memory at a time
    return writes


def reconcile(
    spec: StoreSpec,
    group: FeatureGroupDefinition,
    opts: argparse.Namespace,
    shares: list,
    present: Ids,
    run_time: float,
    ids_distinct: bool,
    writes: list[dict],
    since_ms: int,
) -> int:
    """After the writes: SageMaker's returning records brought back, a snapshot's deletions, and on
    SageMaker the wait for the offline store. The records deleted. `shares`: SageMaker's ((node, units),
    records, checks) per host; none for the local store."""
    # SageMaker: which records are live now, when a snapshot deletes or a row's time may be older than
    # its record's deletion (times from the data, or --event-time): such a row AWS files as history.
    fixed_times = bool(opts.event_time) or any(c["times_given"] for _, _, c in shares)
    live = None
    if shares and (opts.mode == "snapshot" or fixed_times):
        live = spec.sagemaker().live_ids(group)
    revived = []
    if live is not None:
        revived = revive_returning(spec, group, shares, present, live, opts.batch_rows)
        _require_every_record_written(revived, group, "brought back to")
    deletions = None
    if opts.mode == "snapshot":
        deletions = spec.delete_absent(group, present, run_time, ids_distinct, live)
        _require_every_record_written([deletions], group, "deleted from")
    if spec.backend == "sagemaker" and opts.wait_offline_s > 0:
        # PutRecord and DeleteRecord land in the offline store minutes later: the next step must not read
        # before. What this ingest wrote, not any rows written meanwhile.
        written = [k for w in [*writes, *revived, deletions or {}] for k in w.get("keys", ())]
        spec.sagemaker().wait_offline(group, since_ms, written, opts.wait_offline_s)
    return deletions["written"] if deletions is not None else 0


def revive_returning(
    spec: StoreSpec,
    group: FeatureGroupDefinition,
    shares: list,
    present: Ids,
    live: list[str],
    batch_rows: int,
) -> list[dict]:
    """SageMaker: records of the input that are not live after its writes were deleted earlier, and their
    rows, no newer than the deletion, filed as history. Each comes back as of now with its newest row,
    written by the host that holds that row, as the local store brings such a record back. `shares`:
    ((node, units), records, checks) per host."""
    text = ids(present)
    returning = text[~is_in(text, pd.Series(live, dtype=str))]
    if not len(returning):
        return []
    rows = pd.concat(
        pd.DataFrame({"id": ids(c["ids"]), "time": c["times"], "share": k})
        for k, (_, _, c) in enumerate(shares)
    )
    newest = rows[is_in(rows["id"], returning)].sort_values(["id", "time"], kind="stable")
    newest = newest.drop_duplicates("id", keep="last")
    now = time.time()
    return ray_tasks.settle(
        [
            ray_tasks.on_host(
                node,
                revive_share,
                spec,
                group,
                records,
                newest["id"][newest["share"] == k].tolist(),
                now,
                batch_rows,
            )
            for k, ((node, _), records, _) in enumerate(shares)
            if (newest["share"] == k).any()
        ]
    )


def revive_share(
    spec: StoreSpec,
    group: FeatureGroupDefinition,
    records: pd.DataFrame,
    returning: list[str],
    now: float,
    batch_rows: int,
) -> dict:
    """A host's returning records: each one's newest row, as of `now`, in batches as the share's."""
    rid, et = group.record_id, group.event_time
    mine = records[records[rid].astype(str).isin(returning)].sort_values(et, kind="stable")
    newest = mine.drop_duplicates(rid, keep="last").assign(**{et: now})
    return spec.write(group, newest, batch_rows, times_given=True)


def _require_every_record_written(
    writes: list[dict], group: FeatureGroupDefinition, what: str = "written to"
) -> None:
    failed = sum(w["failed"] for w in writes)
    if failed:
        codes: dict[str, int] = {}
        for w in writes:
            for code, n in w["errors"].items():
                codes[code] = codes.get(code, 0) + n
        raise UserError(
            f"{failed} of {sum(w['offered'] for w in writes)} records were not {what} feature group "
            f"{group.name} after retries ({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})"
        )


def summarize(
    checks: list[dict], writes: list[dict], group: FeatureGroupDefinition, elapsed: float, files: list[str]
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
        f"{report['feature_group']} ({report['mode']}): {report['written']} new or changed, "
        f"{report['already_present']} unchanged, {report['deleted']} deleted, "
        f"{report['duplicates']} repeated in the input, "
        f"{report['quarantined']} quarantined; "
        f"{report['seconds']:.1f} s ({report['rows_per_second']:,.0f} rows/s) on "
        f"{len(report['hosts'])} host(s)"
    )
