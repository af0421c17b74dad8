"""The lifeline: one TCP connection from each worker to the head that outlives Ray's own links.

It answers the two questions Ray cannot answer by itself:
- a worker must know whether the head *finished* (exit 0, after the head) or *died* (exit non-zero,
  fast): the head sends `done <status>` before it stops, and the connection closes only when the head
  process ends, so a worker never exits before the head (in SageMaker local mode the first container to
  exit ends the job);
- the head must know at once which host it lost: a worker's connection closing, or going silent past
  `silence_s`, names that host.

Lines, both ways: `challenge <nonce>` (head first, a fresh nonce per connection), `hello <host> <nonce>
<proof>` (the worker's answer, with a fresh nonce of its own), `welcome <proof>` (the head's), then
`beat` every `beat_s` seconds and `done <status>` (head only). Each proof is an HMAC with the cluster
token (SMRAY_RAY_TOKEN) of the side's role, both nonces and the host: each side knows the other holds
the token, and a captured proof is worth nothing on another connection or to the other side.

The head admits only the job's workers, each once; a line is at most MAX_LINE bytes; a connection that
has not said its whole hello within `hello_s` (the worker: heard the whole welcome) is closed, however
slowly its bytes drip, and at most MAX_PENDING such connections are served at once (the rest are closed
on accept). Any line out of place or malformed is a refusal: logged, and the connection closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import logging
import re
import secrets
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
HELLO_S = 5.0
MAX_LINE = 512
MAX_PENDING = 16


_CHALLENGE = re.compile(r"challenge ([0-9a-f]{32})")
_HELLO = re.compile(r"hello (\S+) ([0-9a-f]{32}) ([0-9a-f]{64})")
_WELCOME = re.compile(r"welcome ([0-9a-f]{64})")
_DONE = re.compile(r"done ([0-9]{1,3})")


def proof(token: str, role: str, head_nonce: str, worker_nonce: str, host: str) -> str:
    """What `role` ("worker" or "head") sends to prove it holds `token` on the connection of these nonces."""
    message = f"{role} {head_nonce} {worker_nonce} {host}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


class _Refused(Exception):
    """A peer refused: a stranger, a side that cannot prove it holds the token, or a malformed line."""


@dataclass
class _Peer:
    host: str
    sock: socket.socket


class LifelineServer:
    """Runs on the head: accepts workers, tracks who is alive, tells them when the head is done."""

    def __init__(
        self,
        bind_ip: str,
        token: str,
        workers: set[str],
        on_lost: Callable[[str, str], None],
        port: int = DEFAULT_PORT,
        beat_s: float = BEAT_S,
        silence_s: float = SILENCE_S,
        hello_s: float = HELLO_S,
    ) -> None:
        self._token = token
        self._workers = frozenset(workers)
        self._hello_s = hello_s
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
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
            _close(peer.sock)

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            if not self._pending.acquire(blocking=False):  # too many strangers at once: no thread for this
                log.warning("lifeline: refused a connection from %s: too many waiting to say hello", addr[0])
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock, addr), name="lifeline-peer", daemon=True).start()

    def _serve(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        try:
            peer = self._admit(sock)
        except (_Refused, OSError) as exc:
            log.warning("lifeline: refused a connection from %s without a valid hello (%s)", addr[0], exc)
            _close(sock)
            return
        finally:
            self._pending.release()
        log.info("host %s joined (from %s)", peer.host, addr[0])
        sock.settimeout(self._silence_s)
        reader = sock.makefile("rb")  # made only now: the hello's reads took nothing past its line
        reason = "its connection closed"
        try:
            while (line := _read_line(reader)) is not None:  # beats: the socket's timeout catches a silence
                if line != "beat":
                    raise _Refused(f"a malformed line {line[:80]!r}")
        except TimeoutError:
            reason = f"silent for {self._silence_s:g} s"
        except (_Refused, OSError) as exc:
            reason = f"connection error: {exc}"
            if isinstance(exc, _Refused):  # else the connection stays until the head process ends
                _close(sock)
        with self._lock:
            closing = self._closing
            self._peers.pop(peer.host, None)
        if not closing:
            self._on_lost(peer.host, reason)

    def _admit(self, sock: socket.socket) -> _Peer:
        """Challenge, check the answer, prove the head's side, and register the host: one of the job's
        workers, once; all within `hello_s` of the connection, however slowly its bytes come."""
        deadline = time.monotonic() + self._hello_s
        nonce = secrets.token_hex(16)
        sock.settimeout(self._hello_s)
        sock.sendall(f"challenge {nonce}\n".encode())
        host, theirs, answer = _expect(_read_line_by(sock, deadline), _HELLO, "hello").groups()
        if not hmac.compare_digest(answer, proof(self._token, "worker", nonce, theirs, host)):
            raise _Refused(f"the hello for {host!r} has no valid proof")
        if host not in self._workers:
            raise _Refused(f"{host!r} is not a worker of this job")
        with self._joined:
            if host in self._peers:
                raise _Refused(f"{host} is already connected")
            # Sent before the host is a peer, so before any beat; a new connection's send never blocks.
            sock.sendall(f"welcome {proof(self._token, 'head', nonce, theirs, host)}\n".encode())
            peer = self._peers[host] = _Peer(host, sock)
            self._joined.notify_all()
        return peer

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

    def __init__(
        self, sock: socket.socket, reader: io.BufferedReader, beat_s: float, silence_s: float
    ) -> None:
        self._sock = sock
        self._reader = reader
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
        hello_s: float = HELLO_S,
    ) -> LifelineClient:

        def hello() -> tuple[socket.socket, io.BufferedReader]:
            sock = socket.create_connection((head_ip, port), timeout=hello_s)
            try:
                _join(sock, host, token, hello_s)
            except (OSError, _Refused) as exc:
                if isinstance(exc, _Refused):
                    log.warning("lifeline: refused the head at %s:%d: %s", head_ip, port, exc)
                _close(sock)
                raise
            return sock, sock.makefile("rb")  # made only now: the handshake took nothing past its lines

        sock, reader = retry(
            hello,
            what=f"the head's lifeline at {head_ip}:{port} answering",
            timeout_s=timeout_s,
            retry_on=(OSError, _Refused),
            error=ClusterError,
        )
        client = cls(sock, reader, beat_s, silence_s)
        threading.Thread(target=client._beat_loop, name="lifeline-beat", daemon=True).start()
        return client

    def wait(self) -> int | None:
        """Blocks until the head process ends. Returns the status the head reported, or None when the
        head vanished without reporting one (it crashed, was killed, or went silent)."""
        status: int | None = None
        self._sock.settimeout(self._silence_s)
        try:
            while (line := _read_line(self._reader)) is not None:
                if line != "beat":
                    status = int(_expect(line, _DONE, "beat or done").group(1))
                    self._sock.settimeout(None)  # the head may take a while to stop Ray and exit
        except TimeoutError:
            log.error("the head has been silent for %g s", self._silence_s)
        except _Refused as exc:
            log.error("lifeline: refused the head's line: %s", exc)
            status = None
        except OSError as exc:
            if status is None:  # after `done`, a reset is the head process ending, as it should
                log.error("lifeline to the head broke: %s", exc)
        self._stop.set()
        _close(self._sock)
        return status

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._beat_s):
            if not _send(self._sock, "beat"):
                return


def _join(sock: socket.socket, host: str, token: str, hello_s: float) -> None:
    """The worker's side of the hello: answer the head's challenge with one of its own, and check that
    the head's welcome proves it holds the token. The welcome has a window of its own from the hello: the
    head counts this worker as joined when it sends it, so giving up on a late one is a lost host."""
    theirs = _expect(_read_line_by(sock, time.monotonic() + hello_s), _CHALLENGE, "challenge").group(1)
    ours = secrets.token_hex(16)
    sock.sendall(f"hello {host} {ours} {proof(token, 'worker', theirs, ours, host)}\n".encode())
    answer = _expect(_read_line_by(sock, time.monotonic() + hello_s), _WELCOME, "welcome").group(1)
    if not hmac.compare_digest(answer, proof(token, "head", theirs, ours, host)):
        raise _Refused("its welcome did not prove it holds the cluster token")


def _expect(line: str | None, pattern: re.Pattern[str], what: str) -> re.Match[str]:
    if line is None:  # not a refusal of the peer: it may be the one that refused (a retry may pass)
        raise ConnectionError(f"the connection closed before the {what}")
    match = pattern.fullmatch(line)
    if match is None:
        raise _Refused(f"not a {what}: {line[:80]!r}")
    return match


def _read_line_by(sock: socket.socket, deadline: float) -> str | None:
    """One line, stripped, by `deadline` (time.monotonic()) however slowly its bytes come; None once the
    peer closed. Nothing past the line is read (a reader made afterwards starts at the next line)."""
    raw = b""
    while not raw.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Refused("the hello took too long")
        sock.settimeout(remaining)
        try:
            ahead = sock.recv(MAX_LINE + 1 - len(raw), socket.MSG_PEEK)
        except TimeoutError:
            raise _Refused("the hello took too long") from None
        if not ahead:
            return None
        end = ahead.find(b"\n")
        raw += sock.recv(end + 1 if end >= 0 else len(ahead))
        if len(raw) > MAX_LINE:
            raise _Refused(f"a line over {MAX_LINE} bytes")
    return _decoded(raw)


def _read_line(reader: io.BufferedReader) -> str | None:
    """One line, stripped; None once the peer closed. A line over MAX_LINE is refused, not read on."""
    raw = reader.readline(MAX_LINE + 1)
    if len(raw) > MAX_LINE:
        raise _Refused(f"a line over {MAX_LINE} bytes")
    return _decoded(raw) if raw else None


def _decoded(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace").strip()


def _close(sock: socket.socket) -> None:
    """Close for real: a file made by makefile() would keep the connection open after close()."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _send(sock: socket.socket, line: str) -> bool:
    try:
        sock.sendall(f"{line}\n".encode())
        return True
    except OSError:
        return False
