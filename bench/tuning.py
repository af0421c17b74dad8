"""What tuning costs beyond its boosting rounds: smray's tuning (`smray.entrypoints.training.tuning.tune`,
the defaults: 8 trials, ASHA, early stopping) on a local Ray instance with every core, against the same
trials replayed in one plain process: each trial's hyper-parameters for exactly the rounds it ran in
smray, one trial after another with every core (`xgboost.train`, the channels read once). The replay does
the same boosting work and none of the scheduling.

    .venv/bin/python bench/tuning.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import xgboost
from train_vs_xgboost import channels

from smray import hyperparameters
from smray.entrypoints.training import engines, tuning


def replay(job: engines.Job, trials: list[tuning.Trial]) -> float:
    started = time.perf_counter()
    dtrain, dvalid = engines.load_matrices(job, os.cpu_count() or 1)
    for trial in trials:
        xgboost.train(
            hyperparameters.xgboost_params({**job.values, **trial.config}, os.cpu_count()),
            dtrain,
            num_boost_round=trial.rounds,
            evals=[(dvalid, "validation")],
            verbose_eval=False,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    root = channels(Path(tempfile.mkdtemp(prefix="smray-bench-tuning-")), rows)
    values = hyperparameters.resolve({"tune": "true", "target": "PRICE"})
    job = engines.Job(root / "train", root / "validation", "PRICE", values, root / "checkpoints")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    _, trials = tuning.tune(job)
    tuned = time.perf_counter() - started
    ray.shutdown()
    plain = replay(job, trials)
    print(f"{rows:,} rows (80% train, 20% validation), {os.cpu_count()} cores, {len(trials)} trials")
    rounds = [t.rounds for t in trials]
    print(f"rounds each trial ran: {', '.join(map(str, rounds))} ({sum(rounds)} in all)")
    print(f"smray tuning: {tuned:.1f} s; the same rounds in plain xgboost, trial after trial: {plain:.1f} s")
    print(f"tuning / plain: {tuned / plain:.2f}x")


if __name__ == "__main__":
    main()
