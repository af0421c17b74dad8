"""Training wall time of smray's train mode against plain `xgboost.train(tree_method="hist")` on the same
data, rounds and cores, measured side by side in one run, at 100k and 1M rows.

    .venv/bin/python bench/train_vs_xgboost.py [--rows 100000 1000000] [--rounds 100]

Rows: plain = read the Parquet files + xgboost.train; train mode = `smray.entrypoints.modes.train.run`
(reads the channel, checks it, trains, logs metrics, checkpoints, writes the model) with the plain engine
(what a single-host job uses), and with the multi-host engine (XGBoost's collective over Ray tasks)
forced on the same host (what a multi-host job pays per host).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import xgboost

from smray import paths
from smray.contracts.resource_config import local
from smray.entrypoints.modes import train
from smray.ray_bootstrap import auth
from smray.workstation import datagen


def channels(root: Path, rows: int) -> Path:
    frame = datagen.housing_frame(rows, seed=7, with_ids=False)
    cut = int(rows * 0.8)
    for name, part in (("train", frame.iloc[:cut]), ("validation", frame.iloc[cut:])):
        (root / name).mkdir(parents=True)
        for i, chunk in enumerate(range(0, len(part), max(len(part) // 4, 1))):
            part.iloc[chunk : chunk + max(len(part) // 4, 1)].to_parquet(root / name / f"{i}.parquet")
    return root


def plain(root: Path, rounds: int, nthread: int) -> float:
    started = time.perf_counter()
    tr = pd.concat(pd.read_parquet(f) for f in sorted((root / "train").glob("*.parquet")))
    va = pd.concat(pd.read_parquet(f) for f in sorted((root / "validation").glob("*.parquet")))
    dtrain = xgboost.QuantileDMatrix(tr.drop(columns="PRICE"), label=tr["PRICE"], nthread=nthread)
    dvalid = xgboost.QuantileDMatrix(va.drop(columns="PRICE"), label=va["PRICE"], ref=dtrain, nthread=nthread)
    xgboost.train(
        {"tree_method": "hist", "max_depth": 4, "eta": 0.1, "nthread": nthread},
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        verbose_eval=False,
    )
    return time.perf_counter() - started


def train_mode(opt_ml: Path, channel_root: Path, rounds: int, engine: str) -> float:
    os.environ[paths.ROOT_ENV] = str(opt_ml)
    (opt_ml / "input" / "config").mkdir(parents=True, exist_ok=True)
    hp = {"num_round": rounds, "early_stopping_rounds": 0, "engine": engine, "checkpoint_every": 50}
    hp["target"] = "PRICE"  # the channels carry no preprocessing artifact to name it
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in hp.items()})
    )
    opts = train.parser().parse_args(["--channels", str(channel_root)])
    started = time.perf_counter()
    train.run(local(), opts)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    nthread = len(os.sched_getaffinity(0))
    os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))
    import ray

    ray.init(num_cpus=nthread, include_dashboard=False, log_to_driver=False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            root = channels(Path(tmp) / f"data{rows}", rows)
            base = plain(root, args.rounds, nthread)
            here = train_mode(Path(tmp) / f"ml{rows}a", root, args.rounds, "xgboost")
            collective = train_mode(Path(tmp) / f"ml{rows}b", root, args.rounds, "collective")
            results.append((rows, base, here, collective))
    print(f"\n{args.rounds} rounds, {nthread} cores, tree_method=hist, max_depth 4")
    header = ("rows", "plain xgboost", "train mode", "ratio", "collective", "ratio")
    print("{:>9}  {:>13}  {:>10}  {:>5}  {:>9}  {:>5}".format(*header))
    for rows, base, here, collective in results:
        cells = (
            f"{rows:,}",
            f"{base:.2f}s",
            f"{here:.2f}s",
            f"{here / base:.2f}",
            f"{collective:.2f}s",
            f"{collective / base:.2f}",
        )
        print("{:>9}  {:>13}  {:>10}  {:>5}  {:>9}  {:>5}".format(*cells))
    ray.shutdown()


if __name__ == "__main__":
    main()
