"""Why smray logs to MLflow over its REST API rather than with MLflow's client library: both log the same
runs to one real tracking server, side by side in one run.

    .venv/bin/python bench/tracking_client.py [--runs 20]

Per run: an experiment looked up, a run created, one batch of params and metrics, the run ended. The
client's import time and its environment's size are what the host side would carry besides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.support: the server the tests use
from smray.workstation import tracking
from tests.support import mlflow

CLIENT = """
import json, sys, time
started = time.perf_counter()
from mlflow.tracking import MlflowClient
imported = time.perf_counter() - started
from mlflow.entities import Metric, Param
client = MlflowClient(sys.argv[1])
times = []
for i in range(int(sys.argv[2])):
    t = time.perf_counter()
    found = client.get_experiment_by_name("client-bench")
    experiment = found.experiment_id if found else client.create_experiment("client-bench")
    run = client.create_run(experiment, run_name=f"run-{i}")
    client.log_batch(run.info.run_id, metrics=[Metric("test_rmse", 4159.0, 0, 0)],
                     params=[Param(f"hp_{k}", "1") for k in range(12)])
    client.set_terminated(run.info.run_id, "FINISHED")
    times.append(time.perf_counter() - t)
print("RESULT " + json.dumps({"import_s": imported, "times": times}))
"""


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mlflow.server(Path(tmp)) as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        rest_times = []
        for i in range(args.runs):
            run = tracking.Run(
                f"run-{i}",
                time.time(),
                "Succeeded",
                {f"hp_{k}": "1" for k in range(12)},
                {"test_rmse": 4159.0},
            )
            t = time.perf_counter()
            tracking.MlflowRest(url).log(run)
            rest_times.append(time.perf_counter() - t)
        rest_import = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import smray.workstation.tracking"],
            capture_output=True,
            text=True,
        ).stderr.splitlines()[-1]
        printed = subprocess.run(
            [str(mlflow.python()), "-c", CLIENT, url, str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # MLflow prints a line of its own per ended run
        client = json.loads(
            next(line for line in printed.splitlines() if line.startswith("RESULT ")).removeprefix("RESULT ")
        )
    rest_ms = statistics.median(rest_times) * 1000
    client_ms = statistics.median(client["times"]) * 1000
    rest_import_ms = int(rest_import.split("|")[1]) / 1000
    print(f"{'':<22}{'smray REST':>12}{'MLflow client':>15}{'ratio':>8}")
    print(f"{'log one run (median)':<22}{rest_ms:>10.1f} ms{client_ms:>13.1f} ms{client_ms / rest_ms:>7.1f}x")
    print(
        f"{'import':<22}{rest_import_ms:>10.1f} ms{client['import_s'] * 1000:>13.1f} ms"
        f"{client['import_s'] * 1000 / rest_import_ms:>7.0f}x"
    )
    print(
        f"{'environment added':<22}{0:>9} MiB{size_mib(mlflow.VENV):>12.0f} MiB (mlflow {mlflow.LOCK.name})"
    )


if __name__ == "__main__":
    main()
