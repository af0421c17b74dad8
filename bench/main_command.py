"""End-to-end wall time of the main command (`smray run local`) on generated data, default 100k rows: a
first run into a fresh SMRAY_HOME, then a second run that reuses what it can (staged input, feature
store, image), side by side; and the floor, the same work in one plain Python process (read, split,
scale with train's statistics, the same number of tuning trials over the same ranges with early stopping
and the default rounds, the final model, the test RMSE). Prints each run's steps and the ratios.

  .venv/bin/python bench/main_command.py [ROWS]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SMRAY = str(Path(sys.executable).with_name("smray"))
STEP = re.compile(r"^  (\w+)\s+(Succeeded|Failed)\s+(\d+) s$", re.M)


def run(home: Path, rows: int, echo: bool = False) -> tuple[float, dict[str, int], str]:
    """(wall seconds, seconds per step, test metrics) of `smray run local --generate ROWS`; with `echo`
    its output is printed as it comes (a long run shows its progress)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [SMRAY, "run", "local", "--generate", str(rows)],
        env={**os.environ, "SMRAY_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout or ():
        lines.append(line)
        if echo:
            print(f"  | {line}", end="", flush=True)
    seconds = time.monotonic() - started
    output = "".join(lines)
    if process.wait() != 0:
        raise SystemExit(f"run failed ({process.returncode}):\n{output[-5000:]}")
    steps = {m[1]: int(m[3]) for m in STEP.finditer(output)}
    rmse = re.search(r"test metrics\s+(.*)", output)
    return seconds, steps, rmse[1] if rmse else "?"


def plain_floor(rows: int, replay: dict | None = None) -> tuple[float, float]:
    """(seconds, test RMSE) of the main command's work in one process with pandas and xgboost: read,
    split, scale, the tuning trials (smray's very draws), the final model, the test RMSE. Without
    `replay`, each trial runs to early stopping (no scheduler stops one, as smray's ASHA does: the floor
    does at least smray's work). With `replay` (the `metadata.json` of smray's model), each trial runs
    exactly the rounds it ran in smray, and the final model its rounds: the same work, no scheduling."""
    import numpy as np
    import pandas as pd
    import xgboost

    from smray import hyperparameters, schema
    from smray.entrypoints.modes.preprocess import split_of
    from smray.workstation import datagen

    housing = schema.housing()
    defaults = {p.name: p.default for p in hyperparameters.PARAMS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "houses.parquet"
        datagen.housing_frame(rows, seed=1).to_parquet(path)
        started = time.monotonic()
        frame = pd.read_parquet(path)
        split = split_of(frame[housing.record_id], 42, [0.6, 0.2, 0.2]).to_numpy()
        features = frame[housing.feature_names].astype("float64")
        train = features[split == "train"]
        features = (features - train.mean()) / train.std(ddof=0).replace(0, 1)
        data = {
            name: xgboost.DMatrix(features[split == name], label=frame[housing.target][split == name])
            for name in ("train", "validation", "test")
        }

        def fit(values: dict, rounds: int | None = None) -> xgboost.Booster:
            """To early stopping, or exactly `rounds` rounds."""
            return xgboost.train(
                hyperparameters.xgboost_params(values, nthread=os.cpu_count()),
                data["train"],
                num_boost_round=rounds or values["num_round"],
                evals=[(data["validation"], "validation")],
                early_stopping_rounds=None if rounds else values["early_stopping_rounds"],
                verbose_eval=False,
            )

        if replay is None:
            trials = [  # the very draws smray's tuning makes
                {**defaults, **config}
                for config in hyperparameters.sample_trials(defaults["tune_trials"], defaults["seed"])
            ]
            best = min(trials, key=lambda values: fit(values).best_score)
            model = fit(best)
            last = model.best_iteration
        else:
            for trial in replay["tuning_trials"]:
                fit({**defaults, **trial["config"]}, trial["rounds"])
            model = fit({**defaults, **replay["hyperparameters"]}, replay["rounds"])
            last = replay["best_iteration"]
        predicted = model.predict(data["test"], iteration_range=(0, last + 1))
        rmse = float(np.sqrt(np.mean((predicted - data["test"].get_label()) ** 2)))
        return time.monotonic() - started, rmse


def model_metadata(home: Path) -> dict:
    """The `metadata.json` of the model the (only) run in `home` trained: its trials, rounds, best round."""
    [archive] = (home / "runs").glob("*/model/model.tar.gz")
    with tarfile.open(archive) as tar:
        member = tar.extractfile("metadata.json")
        if member is None:
            raise SystemExit(f"{archive} has no metadata.json")
        return json.load(member)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    home = Path(tempfile.mkdtemp(prefix="smray-bench-main-"))
    floor, floor_rmse = plain_floor(rows)
    print(f"plain floor: {floor:.1f} s, test RMSE {floor_rmse:,.0f}", flush=True)
    first = run(home, rows)
    print(f"first run: {first[0]:.0f} s, steps {first[1]}, {first[2]}", flush=True)
    second = run(home, rows)
    print(f"smray run local --generate {rows:,} (defaults: 2-host processing, 1-host training, 8 trials)")
    print(f"{'step':<24}{'first run':>12}{'second run':>12}")
    for step in first[1]:
        print(f"{step:<24}{first[1][step]:>10} s{second[1].get(step, 0):>10} s")
    print(
        f"{'wall time':<24}{first[0]:>10.0f} s{second[0]:>10.0f} s   second/first {second[0] / first[0]:.2f}"
    )
    print(f"test metrics: first {first[2]}; second {second[2]}")
    pipeline = sum(first[1].values())
    print(
        f"plain floor (one process, same trials and rounds): {floor:.1f} s, test RMSE {floor_rmse:,.0f}; "
        f"main command / floor: pipeline {pipeline / floor:.1f}x, wall {first[0] / floor:.1f}x"
    )
    subprocess.run([SMRAY, "endpoints", "delete", "housing"], env={**os.environ, "SMRAY_HOME": str(home)})


if __name__ == "__main__":
    main()
