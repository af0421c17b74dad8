"""The lifeline: one TCP connection from each worker to the head that outlives Ray's own links.

It answers the two questions Ray cannot answer by itself:
- a worker must know whether the head *finished* (exit 0, after the head) or *died* (exit non-zero,
  fast): the head sends `done <status>` before it stops, and the connection closes only when the head
  process ends, so a worker never exits before the head (in SageMaker local mode the first container to
  exit ends the job);
- the head must know at once which host it lost: a worker's connection closing, or going silent past
  `silence_s`, names that host.

Lines, both ways: `hello <host> <proof>` (worker first, proof = HMAC of the host name with the cluster
token), `beat` every `beat_s` seconds, `done <status>` (head only).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from smray.errors import ClusterError
from smray.retry import retry

log = logging.getLogger(__name__)

DEFAULT_PORT = 6390
BEAT_S = 1.0
SILENCE_S = 10.0


def proof(token: str, host: str) -> str:
    return hmac.new(token.encode(), host.encode(), hashlib.sha256).hexdigest()


@dataclass
class _Peer:
    host: str
    sock: socket.socket
    last_seen: float


class LifelineServer:
    """Runs on the head: accepts workers, tracks who is alive, tells them when the head is done."""

    def __init__(
        self,
        bind_ip: str,
        token: str,
        on_lost: Callable[[str, str], None],
        port: int = DEFAULT_PORT,
        beat_s: float = BEAT_S,
        silence_s: float = SILENCE_S,
    ) -> None:
        self._token = token
        self._on_lost = on_lost
        self._beat_s = beat_s
        self._silence_s = silence_s
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)
        self._closing = False
        self._listener = socket.create_server((bind_ip, port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="lifeline-accept", daemon=True).start()
        threading.Thread(target=self._beat_loop, name="lifeline-beat", daemon=True).start()

    def wait_for(self, hosts: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._joined:
            while not hosts <= set(self._peers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = ", ".join(sorted(hosts - set(self._peers)))
                    raise ClusterError(
                        f"timed out after {timeout_s:g} s waiting for hosts to join: {missing}"
                    )
                self._joined.wait(min(remaining, 1.0))

    def finish(self, status: int) -> None:
        """Tell every worker the head's work is over; the connections stay open until the process ends."""
        with self._lock:
            self._closing = True
            peers = list(self._peers.values())
        for peer in peers:
            _send(peer.sock, f"done {status}")

    def close(self) -> None:
        """Drop every connection, as the head process's exit does. The head itself never calls this: its
        workers must see the connection close only once the head process has ended."""
        with self._lock:
            self._closing = True
            peers = list(self._peers.values())
        self._listener.close()
        for peer in peers:
            with contextlib.suppress(OSError):  # already closed by its reader thread
                peer.sock.shutdown(socket.SHUT_RDWR)
            peer.sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock, addr), name="lifeline-peer", daemon=True).start()

    def _serve(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        reader = sock.makefile("r", encoding="utf-8", newline="\n")
        sock.settimeout(self._silence_s)
        try:
            words = reader.readline().split()
        except OSError:
            words = []
        if (
            len(words) != 3
            or words[0] != "hello"
            or not hmac.compare_digest(words[2], proof(self._token, words[1]))
        ):
            log.warning("lifeline: refused a connection from %s without a valid hello", addr[0])
            sock.close()
            return
        host = words[1]
        with self._joined:
            self._peers[host] = _Peer(host, sock, time.monotonic())
            self._joined.notify_all()
        log.info("host %s joined (from %s)", host, addr[0])
        reason = "its connection closed"
        try:
            for line in reader:
                if not line.strip():
                    continue
                with self._lock:
                    self._peers[host].last_seen = time.monotonic()
        except TimeoutError:
            reason = f"silent for {self._silence_s:g} s"
        except OSError as exc:
            reason = f"connection error: {exc}"
        with self._lock:
            closing = self._closing
            self._peers.pop(host, None)
        if not closing:
            self._on_lost(host, reason)

    def _beat_loop(self) -> None:
        while True:
            time.sleep(self._beat_s)
            with self._lock:
                if self._closing:
                    return
                peers = list(self._peers.values())
            for peer in peers:
                _send(peer.sock, "beat")


class LifelineClient:
    """Runs on a worker: connects to the head and waits for it to finish or vanish."""

    def __init__(self, sock: socket.socket, beat_s: float, silence_s: float) -> None:
        self._sock = sock
        self._beat_s = beat_s
        self._silence_s = silence_s
        self._stop = threading.Event()

    @classmethod
    def connect(
        cls,
        head_ip: str,
        host: str,
        token: str,
        timeout_s: float,
        port: int = DEFAULT_PORT,
        beat_s: float = BEAT_S,
        silence_s: float = SILENCE_S,
    ) -> LifelineClient:
        sock = retry(
            lambda: socket.create_connection((head_ip, port), timeout=5),
            what=f"the head's lifeline at {head_ip}:{port} answering",
            timeout_s=timeout_s,
            error=ClusterError,
        )
        _send(sock, f"hello {host} {proof(token, host)}")
        client = cls(sock, beat_s, silence_s)
        threading.Thread(target=client._beat_loop, name="lifeline-beat", daemon=True).start()
        return client

    def wait(self) -> int | None:
        """Blocks until the head process ends. Returns the status the head reported, or None when the
        head vanished without reporting one (it crashed, was killed, or went silent)."""
        status: int | None = None
        self._sock.settimeout(self._silence_s)
        reader = self._sock.makefile("r", encoding="utf-8", newline="\n")
        try:
            for line in reader:
                words = line.split()
                if len(words) == 2 and words[0] == "done":
                    status = int(words[1])
                    self._sock.settimeout(None)  # the head may take a while to stop Ray and exit
        except TimeoutError:
            log.error("the head has been silent for %g s", self._silence_s)
        except OSError as exc:
            log.error("lifeline to the head broke: %s", exc)
        self._stop.set()
        self._sock.close()
        return status

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._beat_s):
            if not _send(self._sock, "beat"):
                return


def _send(sock: socket.socket, line: str) -> bool:
    try:
        sock.sendall(f"{line}\n".encode())
        return True
    except OSError:
        return False
