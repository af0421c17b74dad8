"""Preprocess at scale: the `preprocess` mode (Ray, one host) against the same work in one plain pandas
process (read the store's files, latest version per record, split, fit the scaler on train, scale, write
Parquet), side by side in one run on one store, each in a process of its own: seconds, rows/s, the ratio,
and each process's peak memory (for the mode: its driver, where the table must not gather).

    .venv/bin/python bench/preprocess_scale.py [--rows 1000000] [--versions 2]

`--versions 2` ingests the table twice with changed values, so half of the versions are history.
`--task binary` preprocesses the generated churn table instead (text features and labels, empty cells;
the plain side codes categories and labels as pandas does), and with `--as-numbers` its twin of numbers
only (each text a code; the same rows and columns): text against numbers, per value.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUP = "housing"


def table(task: str, rows: int, as_numbers: bool = False):
    """The generated table of `task` and its schema (with `as_numbers`, its twin of numbers only)."""
    from smray import schema as schema_mod
    from smray.workstation import datagen

    kind = datagen.TABLES[task]
    schema = schema_mod.parse(kind.schema) if kind.schema else schema_mod.housing()
    frame = kind.frame(rows, seed=5)
    return datagen.as_numbers(frame, schema) if as_numbers else (frame, schema)


def build_store(store: Path, rows: int, versions: int, task: str, as_numbers: bool) -> None:
    from smray import tables
    from smray.feature_store.backends import StoreSpec
    from smray.feature_store.definition import FeatureGroupDefinition

    raw, schema = table(task, rows, as_numbers)
    spec = StoreSpec("local", str(store), "", "")
    group = spec.ensure_group(FeatureGroupDefinition.from_schema(GROUP, schema))
    spec.local().save_schema(GROUP, schema)
    frame = raw[[schema.record_id]].join(tables.values(raw, schema, "generated"))  # as ingest reads it
    frame[schema.event_time] = time.time() - 3600
    change = schema.numeric_columns[0]  # the target, or a feature of a classification table
    for version in range(versions):
        changed = frame.assign(
            **{change: frame[change] + version, schema.event_time: frame[schema.event_time] + version}
        )
        spec.write(group, changed, 200_000, True)


def plain(store: Path, out: Path) -> int:
    """The floor: the same steps in one pandas process."""
    import numpy as np

    from smray.entrypoints.modes.preprocess import numeric_features, split_of
    from smray.feature_store.local import LocalFeatureStore
    from smray.feature_store.record_state import latest_versions

    local = LocalFeatureStore(store)
    group = local.describe(GROUP)
    schema = local.schema(GROUP)
    history = pd.concat([pd.read_parquet(f) for f in local.committed_files(group)], ignore_index=True)
    latest = latest_versions(history, group.record_id, group.event_time)
    split = split_of(latest[group.record_id], 42, [0.6, 0.2, 0.2]).to_numpy()
    values = latest[schema.value_columns].reset_index(drop=True)
    train = values[split == "train"]
    numeric = numeric_features(schema)
    mean, std = train[numeric].mean(), train[numeric].std(ddof=0)
    values[numeric] = (values[numeric].astype("float64") - mean) / std.replace(0, 1)
    for column in schema.text_columns:  # codes of the train split's values; NaN for others
        codes = pd.Index(sorted(train[column].dropna().unique())).get_indexer(values[column])
        values[column] = np.where(codes < 0, np.nan, codes)
    values = values.astype("float64")
    for name in ("train", "validation", "test"):
        (out / name).mkdir(parents=True)
        values[(split == name) & values[schema.target].notna().to_numpy()].to_parquet(
            out / name / "part.parquet", index=False
        )
    return len(latest)


def mode(store: Path, out: Path) -> int:
    from smray.contracts.resource_config import local
    from smray.entrypoints.modes import preprocess
    from smray.ray_bootstrap import auth

    os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    opts = preprocess.parser().parse_args(
        [
            "--store",
            str(store),
            "--output",
            str(out / "splits"),
            "--transform-output",
            str(out / "transform"),
            "--report",
            str(out / "report.json"),
        ]
    )
    preprocess.run(local(), opts)
    ray.shutdown()
    return json.loads((out / "report.json").read_text())["records"]


def one(kind: str, store: Path) -> None:
    """Runs one side in this process and prints its figures as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        records = (plain if kind == "plain" else mode)(store, Path(tmp))
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": records, "seconds": seconds, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--task", choices=("regression", "binary", "multiclass"), default="regression")
    parser.add_argument("--as-numbers", action="store_true", help="its text columns as numbers (codes)")
    parser.add_argument("--one", choices=("plain", "mode"), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.store)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        print(f"building a store of {args.rows:,} records x {args.versions} versions ...", flush=True)
        build_store(store, args.rows, args.versions, args.task, args.as_numbers)
        results = {}
        for kind in ("plain", "mode"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, "--store", str(store)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[kind] = json.loads(out.strip().splitlines()[-1])
    floor = results["plain"]["seconds"]
    _, schema = table(args.task, 1, args.as_numbers)
    per_row = len(schema.value_columns)  # values: cells of the target and the features
    name = f"{args.task} table{' as numbers' if args.as_numbers else ''}"
    print(
        f"\npreprocess, {args.rows:,} records x {args.versions} versions of the {name} "
        f"({len(schema.text_columns)} of {per_row} value columns text), one host, {os.cpu_count()} cores"
    )
    print(f"{'':<34}{'seconds':>9}  {'rows/s':>10}  {'values/s':>11}  {'vs plain':>8}  {'peak MiB':>9}")
    for kind, label in (("plain", "plain pandas, one process"), ("mode", "preprocess mode (driver)")):
        r = results[kind]
        assert r["records"] == results["plain"]["records"], results
        rate = r["records"] / r["seconds"]
        print(
            f"{label:<34}{r['seconds']:>9.2f}  {rate:>10,.0f}  {rate * per_row:>11,.0f}  "
            f"{r['seconds'] / floor:>7.2f}x  {r['peak_mib']:>9,.0f}"
        )


if __name__ == "__main__":
    main()
