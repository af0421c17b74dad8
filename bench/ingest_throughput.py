"""Ingest throughput into the local feature store: rows per second at 1M rows (default), on one host,
with the checked two-phase ingest the image runs, against a bare Parquet write of the same rows (the
floor: no checks, no online store, no idempotency) measured in the same run. `--task binary` ingests the
generated churn table instead (text features and labels, empty cells), and with `--as-numbers` its twin
of numbers only (each text a code; the same rows, columns and files): text against numbers, per value.

    .venv/bin/python bench/ingest_throughput.py [--rows 1000000] [--files 8] [--repeats 3]
        [--task binary [--as-numbers]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from smray import schema as schema_mod
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest
from smray.ray_bootstrap import auth
from smray.workstation import datagen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the median is compared")
    parser.add_argument("--task", choices=datagen.TASKS, default="regression", help="which generated table")
    parser.add_argument("--as-numbers", action="store_true", help="its text columns as numbers (codes)")
    args = parser.parse_args()
    if args.as_numbers and args.task == "regression":
        parser.error("--as-numbers turns a table's text into numbers: --task binary or multiclass")
    os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    timings: dict[str, list[float]] = {
        "bare Parquet read+write": [],
        "ingest (first run)": [],
        "ingest (re-run)": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generated = datagen.generate(
            root / "raw", rows=args.rows, files=args.files, fmt="parquet", seed=11, task=args.task
        )
        schema = schema_mod.load(generated.schema) if generated.schema else schema_mod.housing()
        if args.as_numbers:
            for path in generated.files:
                numbers, twin = datagen.as_numbers(pd.read_parquet(path), schema)
                numbers.to_parquet(path, index=False)
            schema = twin
            generated.schema.write_text(schema.dumps())
        for repeat in range(args.repeats):  # side by side, in turns: the machine's noise hits each alike
            started = time.perf_counter()
            frame = pd.concat(pd.read_parquet(f) for f in sorted((root / "raw").glob("*.parquet")))
            frame.to_parquet(root / f"bare-{repeat}.parquet")
            timings["bare Parquet read+write"].append(time.perf_counter() - started)
            del frame
            opts = ingest.parser().parse_args(
                [
                    *("--input", str(root / "raw"), "--store", str(root / f"store-{repeat}")),
                    *("--quarantine", str(root / "q"), "--report", str(root / "report.json")),
                    *("--feature-group", schema.name),
                    *(("--schema", str(generated.schema)) if generated.schema else ()),
                ]
            )
            for name in ("ingest (first run)", "ingest (re-run)"):  # the re-run: every row already present
                started = time.perf_counter()
                ingest.run(local(), opts)
                timings[name].append(time.perf_counter() - started)
    ray.shutdown()
    bare = statistics.median(timings["bare Parquet read+write"])
    values = args.rows * len(schema.value_columns)  # a value: one cell of the target or a feature
    kinds = f"{len(schema.text_columns)} of {len(schema.value_columns)} value columns text"
    table = f"{args.task} table{' as numbers' if args.as_numbers else ''} ({kinds})"
    print(f"\n{args.rows:,} rows of the {table} in {args.files} Parquet files, ", end="")
    print(f"one host, {os.cpu_count()} cores, median of {args.repeats} runs each")
    print(f"{'':<26}{'seconds':>9}  {'runs':>20}  {'rows/s':>10}  {'values/s':>11}  {'vs bare':>8}")
    for name, runs in timings.items():
        secs = statistics.median(runs)
        spread = ", ".join(f"{r:.2f}" for r in runs)
        print(
            f"{name:<26}{secs:>9.2f}  {spread:>20}  {args.rows / secs:>10,.0f}  {values / secs:>11,.0f}  "
            f"{secs / bare:>7.1f}x"
        )


if __name__ == "__main__":
    main()
