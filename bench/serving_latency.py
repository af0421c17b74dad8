"""Serving: smray's `serve` against `mlflow models serve` of the same XGBoost booster, side by side in one
run on this machine: p50/p99 latency of one-row requests and rows/s of 1000-row batches, each server with
2 workers, the client in another process over 127.0.0.1 keep-alive connections, CSV in and out.

smray also applies the model's scaler to raw features; MLflow's pyfunc gets the already scaled rows (it
serves the bare booster), so the comparison is generous to MLflow.

MLflow runs with OMP_NUM_THREADS=1 (one XGBoost thread per worker, as smray sets for itself), and also
with a single worker: with 2 workers its answers on kept-alive connections stall ~45 ms each here.

MLflow is not a dependency of smray: point MLFLOW_PYTHON at a Python that has mlflow and xgboost, e.g.
  python3 -m venv build/bench-mlflow && build/bench-mlflow/bin/pip install "mlflow==3.*" xgboost
  .venv/bin/python bench/serving_latency.py            # uses build/bench-mlflow/bin/python by default
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smray import model_artifact  # noqa: E402
from smray.workstation.endpoints.client import Connection  # noqa: E402
from tests.support.models import build_model, free_port, sample_rows  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
MLFLOW_PYTHON = os.environ.get("MLFLOW_PYTHON", str(ROOT / "build" / "bench-mlflow" / "bin" / "python"))

SAVE_MLFLOW = """
import sys, mlflow.xgboost, xgboost
booster = xgboost.Booster(model_file=sys.argv[1])
mlflow.xgboost.save_model(booster, sys.argv[2])
"""


def wait_ready(url: str, process: subprocess.Popen, path: str = "/ping", timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if Connection(url, timeout_s=2).request("GET", path).status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} not ready in {timeout_s} s")


def mlflow_serve(model: Path, port: int, workers: int) -> list[str]:
    return [
        MLFLOW_PYTHON,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        str(model),
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "-w",
        str(workers),
    ]


def measure(url: str, body: bytes, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        f.write(body)
        f.flush()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "smray.workstation.endpoints.client",
                url,
                f.name,
                "text/csv",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)


def main() -> None:
    if not Path(MLFLOW_PYTHON).exists():
        raise SystemExit(f"no MLflow Python at {MLFLOW_PYTHON}: see this file's docstring")
    work = Path(tempfile.mkdtemp(prefix="smray-bench-serving-"))
    model_dir = build_model(work / "model", rows=20_000, rounds=200)
    model = model_artifact.load(model_dir)
    subprocess.run(
        [MLFLOW_PYTHON, "-c", SAVE_MLFLOW, str(model_dir / "model.json"), str(work / "mlflow")], check=True
    )

    raw_one, raw_batch = sample_rows(1), sample_rows(1000, seed=3)
    scaled = {n: model.transform.apply(r) for n, r in (("one", raw_one), ("batch", raw_batch))}
    bodies = {
        "smray": {n: r.to_csv(index=False).encode() for n, r in (("one", raw_one), ("batch", raw_batch))},
        "mlflow": {n: r.to_csv(index=False).encode() for n, r in scaled.items()},
    }
    bodies["mlflow-1w"] = bodies["mlflow"]
    results = {}
    entrypoint = str(Path(sys.executable).with_name("smray-entrypoint"))
    ports = {name: free_port() for name in ("smray", "mlflow", "mlflow-1w")}
    servers = {  # name -> command; each on its own port
        "smray": [
            entrypoint,
            "serve",
            "--model-dir",
            str(model_dir),
            "--port",
            str(ports["smray"]),
            "--workers",
            "2",
        ],
        "mlflow": mlflow_serve(work / "mlflow", ports["mlflow"], workers=2),
        "mlflow-1w": mlflow_serve(work / "mlflow", ports["mlflow-1w"], workers=1),
    }
    # mlflow starts uvicorn by name: its environment's bin folder must be on PATH
    path = f"{Path(MLFLOW_PYTHON).parent}:{os.environ.get('PATH', '')}"
    env = {**os.environ, "SMRAY_OPT_ML": str(work / "opt_ml"), "SMRAY_LOG_LEVEL": "WARNING", "PATH": path}
    for name, cmd in servers.items():
        url = f"http://127.0.0.1:{ports[name]}"
        # one XGBoost thread per worker for both (smray sets it itself): with its default of a thread per
        # core in each of 2 workers, MLflow's p50 was 52 ms here, oversubscribed, not slow
        server_env = env if name == "smray" else {**env, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(  # its own process group: mlflow runs uvicorn as a child
            cmd, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_ready(url, process)
            measure(url, bodies[name]["one"], 2)  # warm-up
            one = measure(url, bodies[name]["one"], SECONDS)
            batch = measure(url, bodies[name]["batch"], SECONDS)
            results[name] = {
                "p50_ms": one["p50_ms"],
                "p99_ms": one["p99_ms"],
                "one_row_errors": one["errors"],
                "batch_rows_per_s": 1000 * (batch["requests"] - batch["errors"]) / batch["seconds"],
                "batch_errors": batch["errors"],
            }
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    print(
        f"serving benchmark: {SECONDS:.0f} s each, {os.cpu_count()} cores; smray and mlflow with 2 "
        "workers, mlflow-1w with 1 (with 2, MLflow's keep-alive answers stall ~45 ms each here)"
    )
    print(f"{'':18}" + "".join(f"{name:>14}" for name in results) + "   smray vs mlflow / mlflow-1w")
    s, m, m1 = results["smray"], results["mlflow"], results["mlflow-1w"]
    for key, label, better_low in (
        ("p50_ms", "1 row p50 (ms)", True),
        ("p99_ms", "1 row p99 (ms)", True),
        ("batch_rows_per_s", "1000-row rows/s", False),
    ):
        ratios = [(o[key] / s[key]) if better_low else (s[key] / o[key]) for o in (m, m1)]
        print(
            f"{label:18}"
            + "".join(f"{r[key]:>14,.2f}" for r in results.values())
            + f"   {ratios[0]:.2f}x / {ratios[1]:.2f}x faster"
        )
    print(
        "errors: " + ", ".join(f"{n} {r['one_row_errors'] + r['batch_errors']}" for n, r in results.items())
    )


if __name__ == "__main__":
    main()
