import socket
import threading
import time

import pytest

from smray.errors import ClusterError
from smray.ray_bootstrap.lifeline import LifelineClient, LifelineServer, proof

TOKEN = "t" * 32


class Lost:
    def __init__(self):
        self.events = []
        self.seen = threading.Event()

    def __call__(self, host, why):
        self.events.append((host, why))
        self.seen.set()


@pytest.fixture
def server():
    lost = Lost()
    srv = LifelineServer("127.0.0.1", TOKEN, lost, port=0, beat_s=0.1, silence_s=1.0)
    srv.lost = lost
    return srv


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
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall(f"hello algo-3 {proof(TOKEN, 'algo-3')}\n".encode())
    server.wait_for({"algo-3"}, timeout_s=5)
    started = time.monotonic()
    raw.close()
    assert server.lost.seen.wait(5)
    assert server.lost.events == [("algo-3", "its connection closed")]
    assert time.monotonic() - started < 2


def test_a_silent_worker_is_declared_lost(server):
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall(f"hello algo-2 {proof(TOKEN, 'algo-2')}\n".encode())
    assert server.lost.seen.wait(5)
    assert server.lost.events == [("algo-2", "silent for 1 s")]
    raw.close()


def test_a_worker_without_the_token_is_refused(server, caplog):
    client = connect(server, "algo-2", token="wrong" * 8)
    started = time.monotonic()
    assert client.wait() is None  # the head closed the connection: no "done", no beats
    assert time.monotonic() - started < 0.9  # refused at once: a silence would take 1 s
    assert "refused a connection from 127.0.0.1 without a valid hello" in caplog.text
    with pytest.raises(ClusterError):
        server.wait_for({"algo-2"}, timeout_s=0.5)
    assert server.lost.events == []
