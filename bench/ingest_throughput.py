"""Ingest throughput into the local feature store: rows per second at 1M rows (default), on one host,
with the checked two-phase ingest the image runs, against a bare Parquet write of the same rows (the
floor: no checks, no online store, no idempotency) measured in the same run.

    .venv/bin/python bench/ingest_throughput.py [--rows 1000000] [--files 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

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
    args = parser.parse_args()
    os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        datagen.generate(root / "raw", rows=args.rows, files=args.files, fmt="parquet", seed=11)
        started = time.perf_counter()
        frame = pd.concat(pd.read_parquet(f) for f in sorted((root / "raw").glob("*.parquet")))
        frame.to_parquet(root / "bare.parquet")
        bare = time.perf_counter() - started

        opts = ingest.parser().parse_args(
            [
                "--input",
                str(root / "raw"),
                "--store",
                str(root / "store"),
                "--quarantine",
                str(root / "q"),
                "--report",
                str(root / "report.json"),
            ]
        )
        started = time.perf_counter()
        ingest.run(local(), opts)
        first = time.perf_counter() - started
        started = time.perf_counter()
        ingest.run(local(), opts)  # idempotent re-run: every row already present
        again = time.perf_counter() - started
    ray.shutdown()
    print(f"\n{args.rows:,} rows in {args.files} Parquet files, one host, {os.cpu_count()} cores")
    print(f"{'':<28}{'seconds':>9}  {'rows/s':>10}  {'vs bare write':>13}")
    for name, secs in (
        ("bare Parquet read+write", bare),
        ("ingest (first run)", first),
        ("ingest (re-run)", again),
    ):
        print(f"{name:<28}{secs:>9.2f}  {args.rows / secs:>10,.0f}  {secs / bare:>12.1f}x")


if __name__ == "__main__":
    main()
