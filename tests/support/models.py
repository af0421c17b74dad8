"""A small real model (XGBoost + the housing schema's scaler), and helpers to run `serve` processes."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost

from smray import schema, transform
from smray.workstation import datagen

ENTRYPOINT = str(Path(sys.executable).with_name("smray-entrypoint"))


def build_model(folder: Path, rows: int = 2000, seed: int = 1, rounds: int = 40) -> Path:
    """Trains a real booster on scaled synthetic houses and writes it as `train` does."""
    housing = schema.housing()
    frame = datagen.housing_frame(rows, seed=seed, with_ids=False)
    features = housing.feature_names
    scale = {f: transform.Scale(float(frame[f].mean()), float(frame[f].std(ddof=0))) for f in features}
    prep = transform.Transform(housing, scale)
    scaled = prep.apply(frame[features])
    booster = xgboost.train(
        {"max_depth": 4, "eta": 0.2},
        xgboost.DMatrix(scaled.to_numpy(), label=frame[housing.target].to_numpy(), feature_names=features),
        num_boost_round=rounds,
    )
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / "model.json")
    prep.save(folder)
    (folder / "metadata.json").write_text(json.dumps({"engine": "test", "rounds": rounds}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ping(port: int, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    from smray.workstation.endpoints.client import Connection

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}"
        try:
            if Connection(f"http://127.0.0.1:{port}").request("GET", "/ping").status == 200:
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"no /ping answer on port {port} within {timeout_s} s")


CLIENT_TIMEOUT_S = 2.0  # the tests' servers give a client this long for its head and each body read


def start_serve(model: Path, port: int, tmp: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "SMRAY_OPT_ML": str(tmp / "opt_ml"), "SMRAY_LOG_LEVEL": "WARNING"}
    cmd = [ENTRYPOINT, "serve", "--model-dir", str(model), "--port", str(port), "--workers", "2"]
    cmd += ["--client-timeout-s", f"{CLIENT_TIMEOUT_S:g}", *options]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        assert process.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("serve did not stop within 30 s of SIGTERM")


def sample_rows(count: int, seed: int = 7) -> np.ndarray:
    frame = datagen.housing_frame(count, seed=seed, with_ids=False)
    return frame[schema.housing().feature_names]
