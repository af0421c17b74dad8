"""`serve`: SageMaker's inference contract on port 8080 (or SAGEMAKER_BIND_TO_PORT).

GET /ping, POST /invocations, GET /execution-parameters. A pre-forking server: the parent binds the port
and starts one worker process per core (SMRAY_SERVE_WORKERS), each loading the model once and answering
on the shared socket with a thread per connection. SIGTERM (docker stop, SageMaker) stops accepting,
lets in-flight requests finish and exits 0. A worker that dies is replaced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from smray import model_artifact, paths
from smray.contracts import payload
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError

log = logging.getLogger(__name__)

EXIT_MODEL = 3  # a worker could not load the model: no point in restarting it
IDLE_KEEPALIVE_S = 5.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint serve", description=__doc__)
    p.add_argument("--model-dir", type=Path, default=paths.ml_root() / "model")
    p.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")))
    p.add_argument(
        "--workers", type=int, default=int(os.environ.get("SMRAY_SERVE_WORKERS", os.cpu_count() or 1))
    )
    return p


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    timeout = IDLE_KEEPALIVE_S
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    model: ClassVar[model_artifact.Model]
    workers: ClassVar[int]

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(HTTPStatus.OK, b"", "text/plain")
        elif self.path == "/execution-parameters":
            params = {
                "MaxConcurrentTransforms": self.workers,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": 6,
            }
            body = json.dumps(params)
            self._send(HTTPStatus.OK, body.encode(), payload.JSON)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}: use /ping or /invocations")

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}: POST to /invocations")
            return
        try:
            body = self._body()
            kind = payload.media_type(self.headers.get("Content-Type"))
            frame = payload.parse(body, kind, self.model.features)
            answer_type = payload.response_type(self.headers.get("Accept"), kind)
            predictions = self.model.predict(frame, scaled=False)
        except payload.RequestError as exc:
            self._error(HTTPStatus(exc.status), exc.message)
            return
        except Exception as exc:  # the model's own failure: an answer with a reason, the details logged
            log.exception("prediction failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"prediction failed: {type(exc).__name__}: {exc}")
            return
        self._send(HTTPStatus.OK, payload.render(predictions, answer_type), answer_type)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise payload.RequestError(411, "chunked bodies are not supported: send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:  # read(-1) would read until the client closes
            self.close_connection = True
            raise payload.RequestError(400, "Content-Length must be a whole number of bytes")
        if length > payload.MAX_PAYLOAD_BYTES:
            self._discard(length)
            raise payload.RequestError(
                413, f"payload of {length:,} bytes is over the {payload.MAX_PAYLOAD_BYTES:,}-byte limit"
            )
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Reads an oversized body away so the client can read the 413 (a client still sending gets a
        broken pipe instead); beyond a bound the connection is just closed."""
        self.close_connection = True
        if length <= 4 * payload.MAX_PAYLOAD_BYTES:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    if opts.workers < 1:
        raise UserError(f"--workers must be at least 1, got {opts.workers}")
    if not opts.model_dir.exists():
        raise UserError(f"no model at {opts.model_dir}: SageMaker puts the model's files there")
    listener = socket.create_server(("0.0.0.0", opts.port), backlog=1024)
    # every worker polls this one socket: when another worker wins the accept, this one must not block
    listener.setblocking(False)
    log.info("serve: port %d, %d worker(s), model %s", opts.port, opts.workers, opts.model_dir)
    Supervisor(listener, opts.model_dir, opts.workers).run()


class Supervisor:
    """The parent: forks the workers, replaces any that dies, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, listener: socket.socket, model_dir: Path, workers: int) -> None:
        self.listener = listener
        self.model_dir = model_dir
        self.count = workers
        self.children: set[int] = set()
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.count):
            self._fork()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_MODEL:
                self._stop(signal.SIGTERM, None)
                self._reap()
                raise UserError(f"cannot load the model from {self.model_dir} (see the log above)")
            if not self.stopping:
                log.warning("serve: worker %d exited with %d; starting another", pid, code)
                time.sleep(0.5)
                self._fork()
        log.info("serve: stopped")

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(self.listener, self.model_dir, self.count))
        self.children.add(pid)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.children.discard(pid)

    def _reap(self) -> None:
        while self.children:
            pid, _ = os.wait()
            self.children.discard(pid)


def _worker(listener: socket.socket, model_dir: Path, workers: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM stops this worker
    try:
        model = model_artifact.load(model_dir)
    except UserError as exc:
        print(f"serve: {exc}", file=sys.stderr, flush=True)
        return EXIT_MODEL
    model.booster.set_param({"nthread": max(1, (os.cpu_count() or 1) // workers)})
    Handler.model = model
    Handler.workers = workers
    server = _Server(listener.getsockname(), Handler, bind_and_activate=False)
    server.socket = listener
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serve: worker %d ready", os.getpid())
    server.serve_forever(poll_interval=0.2)
    server.server_close()  # joins request threads: in-flight requests finish
    return 0
