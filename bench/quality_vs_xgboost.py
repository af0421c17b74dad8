"""The main command's model beside plain XGBoost's, on the same split, for a generated table of each task,
in one run: `smray run local` with its defaults (no deploy) on the table, then `xgboost.train` with
XGBoost's default settings, native categories and early stopping (10 rounds, up to 1,000) on the very
train / validation / test files that run's preprocess wrote; both scored by the same code
(smray.metrics.evaluate) on the same test rows.

    .venv/bin/python bench/quality_vs_xgboost.py [--rows 5000] [--tasks regression binary multiclass]

Needs the image (./build.sh). A ratio of the gate's metric below 1 means smray's model is worse where
higher is better (auc, accuracy), above 1 where lower is better (rmse).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from smray import gate, metrics, transform
from smray.workstation import datagen

SMRAY = str(Path(sys.executable).with_name("smray"))
OBJECTIVES = {"regression": "reg:squarederror", "binary": "binary:logistic", "multiclass": "multi:softprob"}


def main_command(home: Path, data: Path, schema: Path | None) -> tuple[float, Path]:
    """Wall seconds of `smray run local --no-deploy` on the table, and its run folder."""
    started = time.monotonic()
    table = ["--input", str(data)] + (["--schema", str(schema)] if schema else [])
    run = subprocess.run(
        [SMRAY, "run", "local", *table, "--no-deploy"],
        env={**os.environ, "SMRAY_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        sys.exit(f"smray run local failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    folder = max((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return time.monotonic() - started, folder


def split(folder: Path, name: str, prep: transform.Transform) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.concat(pd.read_parquet(f) for f in sorted((folder / name).glob("*.parquet")))
    return frame[prep.schema.feature_names].to_numpy("float64"), frame[prep.schema.target].to_numpy("float64")


def plain_xgboost(folder: Path, prep: transform.Transform) -> dict:
    """XGBoost's defaults with native categories and early stopping, on the run's own splits."""
    task = prep.schema.task
    params: dict = {"objective": OBJECTIVES[task.value], "tree_method": "hist"}
    if task.value == "multiclass":
        params["num_class"] = len(prep.labels)
    data = {}
    for name in ("train", "validation", "test"):
        x, y = split(folder, name, prep)
        data[name] = (
            xgboost.DMatrix(x, label=y, feature_types=prep.feature_types, enable_categorical=True),
            y,
        )
    booster = xgboost.train(
        params,
        data["train"][0],
        num_boost_round=1000,
        evals=[(data["validation"][0], "validation")],
        early_stopping_rounds=10,
        verbose_eval=False,
    )
    predicted = booster.predict(data["test"][0], iteration_range=(0, booster.best_iteration + 1))
    return metrics.evaluate(task, data["test"][1], predicted, prep.labels)


def compare(root: Path, task: str, rows: int) -> tuple[str, int, str, float, float, float]:
    print(f"{task}: {rows:,} generated rows through smray run local, then plain XGBoost ...", flush=True)
    made = datagen.generate(root / task / "data", rows=rows, files=2, fmt="csv", seed=11, task=task)
    seconds, folder = main_command(root / task / "home", root / task / "data", made.schema)
    prep = transform.load(folder / "transform" / transform.FILE_NAME)
    rule = gate.default(prep.schema.task)
    ours = rule.value(json.loads((folder / "evaluation" / "evaluation.json").read_text()))
    theirs = rule.value(plain_xgboost(folder, prep))
    return task, rows, rule.metric, ours, theirs, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--tasks", nargs="+", default=list(datagen.TASKS), choices=datagen.TASKS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [compare(Path(tmp), task, args.rows) for task in args.tasks]
    print("\nthe main command's defaults vs plain XGBoost (defaults, early stopping), the same test split")
    header = ("task", "rows", "metric", "smray", "plain xgboost", "ratio", "smray run")
    print("{:<11} {:>7} {:<9} {:>10} {:>14} {:>6} {:>10}".format(*header))
    for task, rows, metric, ours, theirs, seconds in results:
        cells = (
            task,
            f"{rows:,}",
            metric,
            f"{ours:.4g}",
            f"{theirs:.4g}",
            f"{ours / theirs:.3f}",
            f"{seconds:.0f} s",
        )
        print("{:<11} {:>7} {:<9} {:>10} {:>14} {:>6} {:>10}".format(*cells))


if __name__ == "__main__":
    main()
