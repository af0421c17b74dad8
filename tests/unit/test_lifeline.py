import contextlib
import secrets
import socket
import struct
import threading
import time

import pytest

from smray.errors import ClusterError
from smray.ray_bootstrap.lifeline import MAX_PENDING, LifelineClient, LifelineServer, proof

TOKEN = "t" * 32


class Lost:
    def __init__(self):
        self.events = []
        self.seen = threading.Event()

    def __call__(self, host, why):
        self.events.append((host, why))
        self.seen.set()


WORKERS = {"algo-2", "algo-3", "algo-4"}


@pytest.fixture
def server():
    lost = Lost()
    srv = LifelineServer("127.0.0.1", TOKEN, WORKERS, lost, port=0, beat_s=0.1, silence_s=1.0, hello_s=1.0)
    srv.lost = lost
    yield srv
    srv.close()


def raw_hello(srv, host, token=TOKEN, welcomed=False):
    """A worker's hello by hand: the challenge read, the answer sent (and, when `welcomed`, the head's
    welcome read); returns the socket and the hello."""
    raw = socket.create_connection(("127.0.0.1", srv.port))
    reader = raw.makefile("rb")
    challenge = reader.readline().split()
    assert challenge[0] == b"challenge"
    ours = secrets.token_hex(16)
    hello = f"hello {host} {ours} {proof(token, 'worker', challenge[1].decode(), ours, host)}\n".encode()
    raw.sendall(hello)
    if welcomed:
        assert reader.readline().startswith(b"welcome ")
    return raw, hello


@pytest.fixture
def fake_head():
    """A head of the test's making on a port of its own: `start(lines, token)` answers each worker's hello
    as a head that holds `token` would, then sends it `lines` and keeps the connection open a while."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn, lines, token):
        with conn:
            ours = "0" * 32
            conn.sendall(f"challenge {ours}\n".encode())
            words = conn.makefile("rb").readline().decode().split()
            host, theirs = (words[1], words[2]) if len(words) == 4 else ("", "")
            conn.sendall(f"welcome {proof(token, 'head', ours, theirs, host)}\n".encode())
            for line in lines:
                conn.sendall(line)
            time.sleep(3)

    def start(lines, token=TOKEN):
        def accept():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn, lines, token), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return listener.getsockname()[1]

    yield start
    listener.close()


def closed_within(sock, seconds):
    """Whether the head closes `sock` within `seconds` (what it sends first, its challenge, is skipped)."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return time.monotonic() - started < seconds


def connect(srv, host, token=TOKEN):
    return LifelineClient.connect(
        "127.0.0.1", host, token, timeout_s=5, port=srv.port, beat_s=0.1, silence_s=1.0
    )


def test_head_waits_for_all_workers_and_names_the_missing_ones(server):
    connect(server, "algo-2")
    with pytest.raises(ClusterError, match="waiting for hosts to join: algo-3, algo-4"):
        server.wait_for({"algo-2", "algo-3", "algo-4"}, timeout_s=0.5)
    connect(server, "algo-3")
    connect(server, "algo-4")
    server.wait_for({"algo-2", "algo-3", "algo-4"}, timeout_s=5)  # returns once all three said hello


def test_worker_learns_the_head_status_only_when_the_head_is_gone(server):
    client = connect(server, "algo-2")
    server.wait_for({"algo-2"}, timeout_s=5)
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("status", client.wait()))
    waiter.start()
    server.finish(0)
    waiter.join(0.5)
    assert waiter.is_alive(), "a worker must not leave before the head process ends"
    server.close()  # what the head process's exit does to its sockets
    waiter.join(5)
    assert result == {"status": 0}
    assert server.lost.events == []


def test_worker_sees_a_vanished_head_as_none(server):
    client = connect(server, "algo-2")
    server.wait_for({"algo-2"}, timeout_s=5)
    server.close()
    assert client.wait() is None


def test_head_hears_at_once_which_worker_it_lost(server):
    raw, _ = raw_hello(server, "algo-3", welcomed=True)  # nothing unread: the close is no reset
    server.wait_for({"algo-3"}, timeout_s=5)
    started = time.monotonic()
    raw.close()
    assert server.lost.seen.wait(5)
    assert server.lost.events == [("algo-3", "its connection closed")]
    assert time.monotonic() - started < 2


def test_a_silent_worker_is_declared_lost(server):
    raw, _ = raw_hello(server, "algo-2")
    assert server.lost.seen.wait(5)
    assert server.lost.events == [("algo-2", "silent for 1 s")]
    raw.close()


def test_a_worker_without_the_token_is_refused(server, caplog):
    with pytest.raises(
        ClusterError, match="the connection closed before the welcome"
    ):  # the head closed on it
        LifelineClient.connect("127.0.0.1", "algo-2", "wrong" * 8, timeout_s=0.5, port=server.port)
    assert "refused a connection from 127.0.0.1 without a valid hello" in caplog.text
    assert "the hello for 'algo-2' has no valid proof" in caplog.text
    with pytest.raises(ClusterError):
        server.wait_for({"algo-2"}, timeout_s=0.5)
    assert server.lost.events == []


def test_a_replayed_hello_is_refused_and_the_real_worker_stays(server, caplog):
    real, captured = raw_hello(server, "algo-2")
    server.wait_for({"algo-2"}, timeout_s=5)
    replay = socket.create_connection(("127.0.0.1", server.port))
    replay.sendall(captured)  # a hello answered another connection's challenge
    assert closed_within(replay, 2)
    assert "the hello for 'algo-2' has no valid proof" in caplog.text
    time.sleep(0.3)
    assert server.lost.events == []
    real.close()  # unread beats make this a reset rather than a close: either way algo-2 is lost
    assert server.lost.seen.wait(5)
    assert [host for host, _ in server.lost.events] == ["algo-2"]


def test_a_second_hello_for_a_connected_host_and_a_stranger_are_refused(server, caplog):
    first = connect(server, "algo-2")
    server.wait_for({"algo-2"}, timeout_s=5)
    second, _ = raw_hello(server, "algo-2")  # the right token, but algo-2 is already here
    assert closed_within(second, 2)
    stranger, _ = raw_hello(server, "algo-9")
    assert closed_within(stranger, 2)
    assert "algo-2 is already connected" in caplog.text
    assert "'algo-9' is not a worker of this job" in caplog.text
    time.sleep(0.3)
    assert server.lost.events == []
    first._sock.close()


def test_a_line_without_end_is_not_read_past_the_limit(server):
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.settimeout(2)
    sent = 0
    with pytest.raises(OSError):  # the head stops reading and closes: sending fails soon
        for _ in range(4096):  # up to 256 MiB
            raw.sendall(b"x" * 65536)
            sent += 65536
    assert sent < 64 * 1024 * 1024
    raw.close()


def test_a_connection_that_says_nothing_is_closed_after_the_hello_deadline(server):
    silent = socket.create_connection(("127.0.0.1", server.port))
    assert closed_within(silent, 3)  # hello_s is 1 s
    assert connect(server, "algo-3")  # and the head still admits its workers
    server.wait_for({"algo-3"}, timeout_s=5)


def test_strangers_that_hold_connections_get_no_thread_each(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_PENDING + 20)]
    time.sleep(0.5)
    assert threading.active_count() < 20 + MAX_PENDING + 8
    for sock in idle:
        sock.close()
    connect(server, "algo-4")  # retries until a slot is free
    server.wait_for({"algo-4"}, timeout_s=5)


def test_a_head_that_ends_with_a_reset_after_done_is_no_error(caplog):
    """A head process that exits with the worker's beats unread resets the connection: after `done`,
    that is the head ending as it should, not a broken lifeline (it was logged as an ERROR before)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def head() -> None:
        conn, _ = listener.accept()
        ours = "1" * 32
        conn.sendall(f"challenge {ours}\n".encode())
        _, host, theirs, _ = conn.makefile("rb").readline().decode().split()  # the hello
        conn.sendall(f"welcome {proof(TOKEN, 'head', ours, theirs, host)}\n".encode())
        conn.sendall(b"done 0\n")
        time.sleep(0.3)  # beats arrive, unread
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, as the head process's exit sends with data unread

    threading.Thread(target=head, daemon=True).start()
    client = LifelineClient.connect("127.0.0.1", "algo-2", TOKEN, timeout_s=5, port=port, beat_s=0.05)
    assert client.wait() == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    listener.close()


def test_strangers_that_drip_their_hello_do_not_keep_a_worker_out(server):
    """Every slot for a connection saying its hello is a stranger's that sends a byte every 0.2 s: each
    is closed when its hello time is up (1 s, however it drips), and the worker joins."""
    stop = threading.Event()

    def drip() -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"h")
                except OSError:  # closed by the head
                    return

    drippers = [threading.Thread(target=drip, daemon=True) for _ in range(MAX_PENDING)]
    for dripper in drippers:
        dripper.start()
    time.sleep(0.3)
    started = time.monotonic()
    try:
        connect(server, "algo-2")  # retries for up to 5 s
        server.wait_for({"algo-2"}, timeout_s=5)
    finally:
        stop.set()
    # the drippers are dropped at their deadline; the worker's retries (0.2 s doubling) then get in. Before
    # the whole-hello deadline, the worker never did (its 5 s ran out).
    assert time.monotonic() - started < 4.5


@pytest.mark.parametrize(
    "line",
    [
        b"done abc\n",
        b"done\n",
        b"done 0 0\n",
        b"done -1\n",
        b"done 99999999999999999999\n",
        b"welcome again\n",
        b"\xff\xfe\x00\n",
        b"x" * 600 + b"\n",
    ],
)
def test_a_malformed_line_from_the_head_is_refused_not_a_crash(fake_head, caplog, line):
    port = fake_head([b"beat\n", line, b"done 0\n"])
    client = LifelineClient.connect("127.0.0.1", "algo-2", TOKEN, timeout_s=5, port=port, beat_s=0.05)
    started = time.monotonic()
    assert client.wait() is None  # refused: the head's later `done 0` is not taken either
    assert time.monotonic() - started < 1  # at once, not after the head's silence
    assert "lifeline: refused the head" in caplog.text


def test_a_head_without_the_token_is_refused_by_the_worker(fake_head, caplog):
    port = fake_head([b"done 0\n"], token="wrong" * 8)
    with pytest.raises(ClusterError, match="did not prove it holds the cluster token"):
        LifelineClient.connect("127.0.0.1", "algo-2", TOKEN, timeout_s=0.5, port=port)
    assert "lifeline: refused the head at 127.0.0.1" in caplog.text


def test_a_head_that_drips_its_challenge_is_left_when_the_hello_time_is_up(caplog):
    listener = socket.create_server(("127.0.0.1", 0))

    def drip() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # the worker has left
            for byte in b"challenge " + b"0" * 32:
                time.sleep(0.1)
                conn.sendall(bytes([byte]))

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ClusterError, match="the hello took too long"):
        LifelineClient.connect(
            "127.0.0.1", "algo-2", TOKEN, timeout_s=0.1, port=listener.getsockname()[1], hello_s=1
        )
    assert time.monotonic() - started < 2  # not the 4 s the drip would take
    listener.close()


@pytest.mark.parametrize("line", [b"hello\n", b"\xff\xfe\n", b"hello a b c d\n", b"beat\n", b"done 0\n"])
def test_a_malformed_hello_is_refused_and_the_head_goes_on(server, caplog, line):
    stranger = socket.create_connection(("127.0.0.1", server.port))
    stranger.sendall(line)
    assert closed_within(stranger, 2)
    stranger.close()
    assert "without a valid hello" in caplog.text
    connect(server, "algo-3")
    server.wait_for({"algo-3"}, timeout_s=5)


def test_a_worker_that_sends_garbage_after_its_hello_is_dropped_as_lost(server, caplog):
    raw, _ = raw_hello(server, "algo-2")
    server.wait_for({"algo-2"}, timeout_s=5)
    raw.sendall(b"beat\nnot a beat\n")
    assert server.lost.seen.wait(5)
    ((host, why),) = server.lost.events
    assert host == "algo-2" and "a malformed line" in why
    assert closed_within(raw, 2)
    raw.close()
