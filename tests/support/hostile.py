"""Hostile clients, as raw sockets: the same cases against every front we ship (`serve` on the host, the
image's `serve` in a container, a local endpoint's router). Each case gets its HTTP status within a
bound, or, for a client that never finishes its request, a closed connection at the client deadline."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from smray.contracts.payload import MAX_PAYLOAD_BYTES
from smray.entrypoints.serving.nginx import REQUESTS_PER_CLIENT
from tests.support.models import sample_rows

HEAD = b"POST /invocations HTTP/1.1\r\nHost: smray\r\nContent-Type: text/csv\r\n"


@dataclass
class Reply:
    statuses: list[int]  # one per answer read, in order
    seconds: float  # until the last answer was read, or the connection closed
    closed: bool  # the server closed the connection
    bodies: list[bytes]


def exchange(port: int, raw: bytes, answers: int = 1, pause_s: float = 0.0, then: bytes = b"") -> Reply:
    """Sends `raw` (then, after `pause_s`, `then`) and reads up to `answers` answers or until closed."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        if pause_s:
            time.sleep(pause_s)
            sock.sendall(then)
        buffer, statuses, bodies, closed = b"", [], [], False
        while len(statuses) < answers:
            parsed = _one_answer(buffer)
            if parsed is None:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                buffer += chunk
                continue
            status, body, buffer = parsed
            statuses.append(status)
            bodies.append(body)
        return Reply(statuses, time.monotonic() - started, closed, bodies)


def _one_answer(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    head, sep, rest = buffer.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0
    )
    if len(rest) < length:
        return None
    return int(lines[0].split()[1]), rest[:length], rest[length:]


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return HEAD + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def check_refusals(port: int, row_csv: bytes) -> None:
    """Requests that are wrong on their head or body: each gets its 4xx (or 200) at once."""
    chunked = f"{len(row_csv):x}\r\n".encode() + row_csv + b"\r\n0\r\n\r\n"
    cases = {
        "negative Content-Length": (HEAD + b"Content-Length: -1\r\n\r\n", 400),
        "malformed Content-Length": (HEAD + b"Content-Length: 12abc\r\n\r\n", 400),
        "6 MiB + 1 byte": (HEAD + f"Content-Length: {MAX_PAYLOAD_BYTES + 1}\r\n\r\n".encode(), 413),
        "a 20 KiB header": (HEAD + b"X-Padding: " + b"x" * 20_000 + b"\r\n\r\n", 431),
        "a 20 KiB request line": (b"GET /ping?" + b"x" * 20_000 + b" HTTP/1.1\r\nHost: smray\r\n\r\n", 414),
        # Heads within nginx's limits are the model's, whatever gunicorn's own limits would say:
        "a 6 KiB request line": (
            _post(row_csv).replace(b"/invocations", b"/invocations?" + b"x" * 6000),
            200,
        ),
        "a 12 KiB header": (_post(row_csv, b"X-Padding: " + b"x" * 12_000 + b"\r\n"), 200),
        "200 header lines": (_post(row_csv, b"".join(b"X-%d: 1\r\n" % i for i in range(200))), 200),
        "a control character in an unused header": (_post(row_csv, b"X-Note: a\x01b\r\n"), 200),
        "a control character in Accept": (_post(row_csv, b"Accept: text/csv\x7f\r\n"), 400),
        "a raw UTF-8 target": (b"GET /ping?\xc3\xa9 HTTP/1.1\r\nHost: smray\r\n\r\n", 400),
        "a two-letter method": (b"AB /ping HTTP/1.1\r\nHost: smray\r\n\r\n", 405),
        "TRACE": (b"TRACE /ping HTTP/1.1\r\nHost: smray\r\n\r\n", 405),
        "HTTP/2.0 in the request line": (b"GET /ping HTTP/2.0\r\nHost: smray\r\n\r\n", 505),
        "Transfer-Encoding: gzip": (HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        "garbage": (b"\x00\x01 not http\r\n\r\n", 400),
        "chunked (accepted, as SageMaker does)": (
            HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
            200,
        ),
        "a 400-digit JSON integer": (
            _post(b"[[" + b"9" * 400 + b",1,1,1,1,1,1,1]]").replace(b"text/csv", b"application/json"),
            400,
        ),
        "JSON nested 100,000 deep": (
            _post(b"[" * 100_000 + b"]" * 100_000).replace(b"text/csv", b"application/json"),
            400,
        ),
        "a CSV field over 128 KiB": (_post(b'"' + b"1" * 200_000 + b'"\n'), 400),
        "no body": (HEAD + b"\r\n", 400),
    }
    for name, (raw, status) in cases.items():
        reply = exchange(port, raw)
        assert reply.statuses == [status], (name, reply)
        assert reply.seconds < 2, (name, reply.seconds)
        assert len(reply.bodies[0].splitlines()) == 1, (name, reply.bodies)  # a one-line reason
        assert b"<html" not in reply.bodies[0].lower(), (name, reply.bodies)  # never gunicorn's page


def check_pipelined_and_broken_clients(port: int, row_csv: bytes) -> None:
    request = _post(row_csv)
    reply = exchange(port, request * 3, answers=3)
    assert reply.statuses == [200, 200, 200], reply
    body = _post(row_csv * 50)
    for _ in range(5):  # a client that disconnects mid-body, again and again: nothing is left stuck
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(body[: len(body) // 2])
    assert exchange(port, request).statuses == [200]


def check_requests_per_client(port: int, row_csv: bytes) -> None:
    """One address with REQUESTS_PER_CLIENT requests in progress (their bodies stalled): one more gets a
    one-line 429 at once, and the address is served again once they end."""
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(REQUESTS_PER_CLIENT)]
    try:
        for sock in held:
            sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n1,2,")
        time.sleep(0.3)  # for nginx to read their heads: a request counts from then on
        reply = exchange(port, _post(row_csv))
        assert reply.statuses == [429] and len(reply.bodies[0].splitlines()) == 1, reply
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 2
    while (reply := exchange(port, _post(row_csv))).statuses != [200] and time.monotonic() < deadline:
        time.sleep(0.05)  # until nginx has seen the held connections close
    assert reply.statuses == [200], reply


def check_slow_clients(port: int, client_s: float) -> None:
    """A head or a body that stalls: the connection is closed at the client deadline (nginx answers no
    request it never received), and it never reaches the model."""
    results: dict[str, Reply] = {}
    cases = {
        "slow head": HEAD,
        "slow body": HEAD + b"Content-Length: 100\r\n\r\n1,2,",
    }
    threads = [
        threading.Thread(target=lambda n=n, raw=raw: results.__setitem__(n, exchange(port, raw)))
        for n, raw in cases.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, reply in results.items():
        assert reply.closed and reply.statuses in ([], [408]), (name, reply)
        assert client_s - 0.5 < reply.seconds < client_s + 3, (name, reply.seconds)


def ping_p99_ms_with_slow_clients(port: int, slow: int = 50, pings: int = 200) -> float:
    """/ping's p99 while `slow` clients each trickle a head one byte a second."""
    stop = threading.Event()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(slow)]

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in sockets:
                with contextlib.suppress(OSError):  # closed at the deadline: nothing more to send
                    sock.send(b"X")

    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        for sock in sockets:
            sock.sendall(HEAD[:20])
        times = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for _ in range(pings):
                started = time.perf_counter()
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: smray\r\n\r\n")
                buffer = b""
                while _one_answer(buffer) is None:
                    buffer += sock.recv(4096)
                assert _one_answer(buffer)[0] == 200
                times.append((time.perf_counter() - started) * 1000)
    finally:
        stop.set()
        feeder.join()
        for sock in sockets:
            sock.close()
    return sorted(times)[int(0.99 * len(times)) - 1]


def in_flight_through_stop(port: int, row_csv: bytes, stop: Callable[[], object]) -> Reply:
    """A request whose body takes 1.5 s (within the tests' client deadline), and `stop` (a SIGTERM)
    0.5 s into it: returns the reply it got."""
    raw = _post(row_csv)
    replies: list[Reply] = []
    client = threading.Thread(
        target=lambda: replies.append(exchange(port, raw[:-5], pause_s=1.5, then=raw[-5:]))
    )
    client.start()
    time.sleep(0.5)
    stop()
    client.join()
    return replies[0]


def check_every_case(port: int, client_s: float, what: str) -> None:
    """The whole suite against one front: refusals, pipelined and broken clients, one client's limit on
    requests in progress, slow clients, and /ping under 50 ms p99 beside 50 slow clients."""
    row = sample_rows(1).to_csv(header=False, index=False).encode()
    check_refusals(port, row)
    check_pipelined_and_broken_clients(port, row)
    check_requests_per_client(port, row)
    check_slow_clients(port, client_s)
    p99 = ping_p99_ms_with_slow_clients(port)
    print(f"/ping p99 {what} with 50 slow clients: {p99:.2f} ms")
    assert p99 < 50
