"""The local endpoint's front (`route`, nginx) against real `serve` processes and model sockets that take a
request and never answer: every request gets an HTTP answer, a request the model may have received is
never sent twice, bad or slow requests are refused without reaching the model, and moving the link to
another model under load drops nothing."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from smray import model_artifact
from smray.workstation.endpoints.client import Connection
from tests.support import hostile
from tests.support.models import (
    CLIENT_TIMEOUT_S,
    ENTRYPOINT,
    build_model,
    free_port,
    sample_rows,
    start_serve,
    stop,
    wait_ping,
)


@pytest.fixture
def sockets():
    """A folder nginx's workers (nobody) can reach, as the endpoint's volume is in the containers."""
    folder = Path(tempfile.mkdtemp(prefix="smray-sockets-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _point(sockets: Path, target: str) -> None:
    """What a deploy does: `current.sock` -> target, by an atomic rename."""
    (sockets / "next.sock").symlink_to(target)
    os.replace(sockets / "next.sock", sockets / "current.sock")


def _start_route(sockets: Path, tmp_path: Path, *options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    route = subprocess.Popen(
        [ENTRYPOINT, "route", "--sockets", str(sockets), "--port", str(port), *options],
        env={**os.environ, "SMRAY_OPT_ML": str(tmp_path / "opt_ml")},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # up once it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return route, port
        except OSError:
            time.sleep(0.1)
    route.kill()
    pytest.fail("route did not start")


class SilentModel:
    """A model's socket that reads a request and counts it, then closes (`close=True`) or says nothing."""

    def __init__(self, path: Path, close: bool) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        path.chmod(0o777)
        self.listener.listen()
        self.close = close
        self.requests = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if conn.recv(65536):
                self.requests += 1
            if self.close:
                conn.close()
            else:
                self.held.append(conn)


@pytest.fixture
def route_to_serve(model_dir, sockets, tmp_path):
    serve = start_serve(model_dir, free_port(), tmp_path, "--socket", str(sockets / "a.sock"))
    route = None
    try:
        wait_ping(int(serve.args[serve.args.index("--port") + 1]), serve)
        _point(sockets, "a.sock")
        route, port = _start_route(sockets, tmp_path, "--client-timeout-s", f"{CLIENT_TIMEOUT_S:g}")
        yield port
    finally:
        if route is not None:
            route.terminate()
            route.wait(30)
        stop(serve)


def test_hostile_clients_get_their_status_through_the_router(route_to_serve):
    hostile.check_every_case(route_to_serve, CLIENT_TIMEOUT_S, "through the router")


@pytest.mark.parametrize("close", [True, False], ids=["model closes", "model never answers"])
def test_a_request_the_model_took_is_answered_once_502_or_504(sockets, tmp_path, close):
    model = SilentModel(sockets / "mute.sock", close=close)
    _point(sockets, "mute.sock")
    route, port = _start_route(sockets, tmp_path, "--answer-deadline-s", "2")
    try:
        reply = hostile.exchange(port, hostile.HEAD + b"Content-Length: 3\r\n\r\n1,2")
        assert reply.statuses == [502 if close else 504], reply
        assert len(reply.bodies[0].splitlines()) == 1
        assert reply.seconds < (1 if close else 4)
        time.sleep(0.5)
        assert model.requests == 1  # never sent again
    finally:
        route.terminate()
        route.wait(30)
        model.listener.close()


def test_moving_the_link_to_another_model_under_load_drops_nothing(model_dir, sockets, tmp_path):
    """The deploy's switch, without containers: a load through the router while `current.sock` moves
    from model A to model B and A is stopped (SIGTERM)."""
    other = build_model(tmp_path / "b", rounds=7)
    a = start_serve(model_dir, free_port(), tmp_path / "a", "--socket", str(sockets / "a.sock"))
    b = start_serve(other, free_port(), tmp_path / "b", "--socket", str(sockets / "b.sock"))
    route = None
    try:
        for serve in (a, b):
            wait_ping(int(serve.args[serve.args.index("--port") + 1]), serve)
        _point(sockets, "a.sock")
        route, port = _start_route(sockets, tmp_path)
        rows = sample_rows(2)
        body = rows.to_csv(header=False, index=False).encode()
        answers: list[tuple[int, bytes]] = []
        done = threading.Event()

        def load() -> None:
            conn = Connection(f"http://127.0.0.1:{port}")
            while not done.is_set():
                try:
                    answer = conn.invoke(body, "text/csv")
                    answers.append((answer.status, answer.body))
                except OSError as exc:
                    answers.append((0, repr(exc).encode()))

        clients = [threading.Thread(target=load) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(1)
        _point(sockets, "b.sock")
        time.sleep(1)
        a.terminate()
        assert a.wait(30) == 0
        time.sleep(1)
        done.set()
        for c in clients:
            c.join()
        failed = [a for a in answers if a[0] != 200]
        assert failed == [] and len(answers) > 100, (failed[:3], len(answers))
        expected_b = [float(v) for v in model_artifact.load(other).predict(rows, scaled=False)]
        assert [float(v) for v in answers[-1][1].split()] == pytest.approx(expected_b, rel=1e-5)
    finally:
        if route is not None:
            route.terminate()
            route.wait(30)
        for serve in (a, b):
            if serve.poll() is None:
                stop(serve)
