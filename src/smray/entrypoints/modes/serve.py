"""`serve`: SageMaker's inference contract on port 8080 (or SAGEMAKER_BIND_TO_PORT).

GET /ping, POST /invocations, GET /execution-parameters, served as SageMaker's own containers do: nginx
in front (connections, slow clients, the 6 MiB limit, deadlines) and gunicorn behind it with one worker
per core (SMRAY_SERVE_WORKERS), each loading the model once. A model that cannot be loaded fails the start
with one line. SIGTERM (docker stop, SageMaker) stops taking connections, answers the requests in flight
for up to --drain-s seconds, and exits 0. Requests carry raw features (text for string features) in CSV,
JSON or JSON Lines; the answers are the task's (smray.contracts.payload), a row per row, so Batch
Transform's Line split gets an answer line per input line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from smray import model_artifact, paths
from smray.contracts.resource_config import ResourceConfig
from smray.entrypoints.serving import app, nginx
from smray.entrypoints.serving.processes import Children
from smray.errors import UserError

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint serve", description=__doc__)
    p.add_argument("--model-dir", type=Path, default=paths.ml_root() / "model")
    p.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")))
    p.add_argument(
        "--workers", type=int, default=int(os.environ.get("SMRAY_SERVE_WORKERS", os.cpu_count() or 1))
    )
    p.add_argument("--socket", type=Path, help="also listen on this Unix socket (a local endpoint's front)")
    p.add_argument(
        "--access-log",
        action="store_true",
        default=os.environ.get("SMRAY_SERVE_ACCESS_LOG") == "1",
        help="a line per request on stdout",
    )
    nginx.Limits.add_arguments(p)
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    if opts.workers < 1:
        raise UserError(f"--workers must be at least 1, got {opts.workers}")
    if not opts.model_dir.exists():
        raise UserError(f"no model at {opts.model_dir}: SageMaker puts the model's files there")
    try:  # here, once, for the one-line reason; each worker loads its own copy after the fork
        model_artifact.load(opts.model_dir)
    except UserError as exc:
        raise UserError(f"cannot load the model from {opts.model_dir}: {exc}") from exc
    runtime = nginx.runtime_dir("smray-serve-")
    workers = runtime / "gunicorn.sock"
    listen = [f"0.0.0.0:{opts.port}"]
    if opts.socket:
        opts.socket.unlink(missing_ok=True)  # left by a container that was killed
        listen.append(f"unix:{opts.socket}")
    # a batch transform sends MaxConcurrentTransforms (= workers) requests at once from one address
    limits = replace(nginx.Limits.from_options(opts), per_client=max(opts.client_requests, opts.workers))
    front = nginx.command(runtime, listen, workers, "model", limits, opts.access_log)
    log.info("serve: port %d, %d worker(s), model %s", opts.port, opts.workers, opts.model_dir)

    children = Children(drain_s=opts.drain_s)
    env = {**os.environ, app.MODEL_DIR_ENV: str(opts.model_dir), app.WORKERS_ENV: str(opts.workers)}
    children.start("gunicorn", _gunicorn(workers, opts), signal.SIGTERM, env)
    children.wait_until(lambda: _accepts(workers), "gunicorn's workers")
    children.start("nginx", front, signal.SIGQUIT)
    children.run()
    log.info("serve: stopped")


def _gunicorn(bind: Path, opts: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"unix:{bind}",
        "--workers", str(opts.workers),
        "--worker-class", "sync",  # nginx buffers every request and answer: a worker never waits on a client
        "--timeout", f"{opts.answer_deadline_s:g}",  # a worker stuck longer is replaced
        "--graceful-timeout", f"{opts.drain_s:g}",
        "--worker-tmp-dir", "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),
        # nginx's limits are the only ones (every refusal its one line, never gunicorn's HTML page): its
        # request line and header lines fit gunicorn's, and it passes on only a few headers.
        "--limit-request-line", "0",  # unlimited
        "--limit-request-field_size", str(2 * nginx.MAX_HEADER_BYTES),  # nginx writes `name: value`
        "--permit-unconventional-http-method",  # any method nginx takes reaches the app: a 404 or 405
        "--log-level", "warning",
        "--error-logfile", "-",
        "smray.entrypoints.serving.app:create()",
    ]  # fmt: skip


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True
