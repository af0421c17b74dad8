"""The local endpoint's front (`route`) against the real `serve` process and a model container that takes
a request and never answers: every request gets an HTTP answer, a request the model may have received is
never sent twice, and bad or slow requests are refused without reaching the model."""

import os
import socket
import subprocess
import threading
import time

import pytest

from tests.support.models import ENTRYPOINT, free_port, sample_rows, wait_ping


def _start_route(tmp_path, upstream: str, *options: str) -> tuple[subprocess.Popen, int]:
    (tmp_path / "upstream").write_text(upstream + "\n")
    port = free_port()
    route = subprocess.Popen(
        [ENTRYPOINT, "route", "--upstream-file", str(tmp_path / "upstream"), "--port", str(port), *options],
        env={**os.environ, "SMRAY_OPT_ML": str(tmp_path / "opt_ml")},
        stderr=subprocess.DEVNULL,
    )
    return route, port


def _exchange(port: int, raw: bytes, timeout_s: float = 10.0) -> bytes:
    """Sends `raw` as it is and reads until the router closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


class MuteUpstream:
    """A model container that reads a request, counts it, and closes without answering."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536):
                    self.requests += 1


@pytest.fixture
def route_to_serve(server, tmp_path):
    url, _ = server
    route, port = _start_route(tmp_path, url.removeprefix("http://"), "--request-deadline-s", "2")
    wait_ping(port, route)
    yield port
    route.terminate()
    route.wait(10)


def test_a_request_goes_through_and_bad_ones_get_their_status(route_to_serve):
    port = route_to_serve
    body = sample_rows(2).to_csv(header=False, index=False).encode()
    ok = _exchange(
        port,
        b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert ok.startswith(b"HTTP/1.1 200") or ok.startswith(b"HTTP/1.0 200"), ok[:200]
    cases = {
        b"Content-Length: -1\r\n": b"400",
        b"Content-Length: 12abc\r\n": b"400",
        b"Transfer-Encoding: chunked\r\n": b"411",
        f"Content-Length: {6 * 1024 * 1024 + 1}\r\n".encode(): b"413",
        b"X-Padding: " + b"x" * 70_000 + b"\r\n": b"431",
    }
    for header, status in cases.items():
        started = time.monotonic()
        answer = _exchange(
            port, b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\n" + header + b"\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 " + status), (header, answer[:200])
        assert time.monotonic() - started < 2  # refused on the head, the body is never waited for


def test_a_slow_client_gets_a_408_at_the_deadline(route_to_serve):
    started = time.monotonic()
    answer = _exchange(route_to_serve, b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 1.5 < time.monotonic() - started < 5


def test_a_request_the_model_took_is_answered_502_and_never_sent_again(tmp_path):
    mute = MuteUpstream()
    route, port = _start_route(tmp_path, f"127.0.0.1:{mute.port}", "--retry-s", "5")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the router is up once it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        started = time.monotonic()
        answer = _exchange(port, b"POST /invocations HTTP/1.1\r\nContent-Length: 3\r\n\r\n1,2")
        assert answer.startswith(b"HTTP/1.1 502"), answer[:200]
        assert b"closed the connection without answering" in answer
        assert time.monotonic() - started < 3  # not retried for --retry-s
        time.sleep(0.5)
        assert mute.requests == 1
    finally:
        route.terminate()
        route.wait(10)
        mute.listener.close()
