"""A real MLflow tracking server for tests and benchmarks: its own venv (build/test-mlflow, from
requirements/test-mlflow.lock, made on first use and again when the lock changes) and a server process
on a free port with a SQLite store."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from smray.retry import NotYet, retry
from smray.workstation.endpoints.client import Connection
from tests.support.models import free_port

ROOT = Path(__file__).parents[2]
LOCK = ROOT / "requirements" / "test-mlflow.lock"
VENV = ROOT / "build" / "test-mlflow"


def python() -> Path:
    """The venv's Python, which has mlflow."""
    stamp = VENV / ".lock"
    if not (stamp.is_file() and stamp.read_text() == LOCK.read_text()):
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(VENV)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
        subprocess.run([str(uv), "pip", "sync", "-q", "--require-hashes", str(LOCK)], check=True, env=env)
        stamp.write_text(LOCK.read_text())
    return VENV / "bin" / "python"


@contextlib.contextmanager
def server(folder: Path) -> Iterator[str]:
    """`mlflow server` storing in `folder`; yields its URL once /health answers."""
    port = free_port()
    command = [str(python()), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--workers", "1"]
    command += ["--default-artifact-root", str(folder / "artifacts")]
    log = folder / "server.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=output)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        if Connection(url, timeout_s=2).request("GET", "/health").status != 200:
            raise NotYet("not healthy yet")

    try:
        retry(healthy, what="the MLflow server answering /health", timeout_s=120, max_delay_s=1.0)
        yield url
    finally:
        process.terminate()
        process.wait(30)
