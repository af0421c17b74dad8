"""`route`: the front of a local endpoint, so a new model version can replace the old one without a
dropped request.

An HTTP/1.1 reverse proxy that reads the current upstream (`host:port`) from a file for every request
and opens a fresh upstream connection per request. Deploying writes the new upstream there (atomically)
once the new container answers /ping; requests already sent to the old one finish there, and client
connections stay open across the switch.

A request is retried against the (possibly new) upstream for up to --retry-s seconds only while it has
not been fully sent (the connection was refused, or broke while sending): a request the model may have
received is never sent twice, and if no answer comes the client gets a 502. A client has
--request-deadline-s to send its head and body; a body needs a Content-Length within the endpoint's
payload limit (anything else is refused with its 4xx); an answer must come within --answer-deadline-s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from http import HTTPStatus
from pathlib import Path

from smray.contracts.payload import MAX_PAYLOAD_BYTES
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024


class Refused(Exception):
    """A request answered here with `status`, not forwarded."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint route", description=__doc__)
    p.add_argument("--upstream-file", type=Path, required=True, help="holds host:port of the model container")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--retry-s", type=float, default=10.0, help="how long a request not yet sent is retried")
    p.add_argument("--request-deadline-s", type=float, default=60.0, help="for a client to send a request")
    p.add_argument("--answer-deadline-s", type=float, default=120.0, help="for the model to answer")
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    if not opts.upstream_file.is_file():
        raise UserError(f"no upstream file at {opts.upstream_file}")
    router = Router(opts.upstream_file, opts.retry_s, opts.request_deadline_s, opts.answer_deadline_s)
    asyncio.run(router.serve(opts.port))


class Router:
    def __init__(
        self, upstream_file: Path, retry_s: float, request_deadline_s: float, answer_deadline_s: float
    ) -> None:
        self.upstream_file = upstream_file
        self.retry_s = retry_s
        self.request_deadline_s = request_deadline_s
        self.answer_deadline_s = answer_deadline_s

    def upstream(self) -> tuple[str, int]:
        host, _, port = self.upstream_file.read_text().strip().rpartition(":")
        return host, int(port)

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self._client, "0.0.0.0", port, limit=MAX_HEADER_BYTES)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("route: port %d -> %s:%d", port, *self.upstream())
        async with server:
            await stop.wait()
        log.info("route: stopped")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.request_deadline_s):
                        head = await _read_head(reader)
                        if head is None:
                            break
                        body = await reader.readexactly(_content_length(head))
                except TimeoutError:
                    raise Refused(
                        408, f"the request did not arrive within {self.request_deadline_s:g} s"
                    ) from None
                except asyncio.LimitOverrunError:
                    raise Refused(431, f"request head over {MAX_HEADER_BYTES:,} bytes") from None
                answer = await self._forward(head, body)
                writer.write(answer)
                await writer.drain()
                if _wants_close(head):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Refused as exc:  # every request gets an answer; this one ends its connection
            writer.write(_status(exc.status, str(exc)))
            await writer.drain()
        finally:
            writer.close()

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        request = _with_close(head) + body
        deadline = time.monotonic() + self.retry_s
        while True:
            host, port = self.upstream()
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES)
                up_writer.write(request)
                await up_writer.drain()
            except OSError as exc:  # not (fully) sent: the model cannot have taken it, so try again
                if time.monotonic() > deadline:
                    raise Refused(502, f"model container {host}:{port} unreachable: {exc}") from exc
                await asyncio.sleep(0.05)
                continue
            try:  # sent: whatever happens now, it is not sent again
                async with asyncio.timeout(self.answer_deadline_s):
                    answer = await up_reader.read()  # the upstream closes after one answer
            except TimeoutError:
                raise Refused(
                    504, f"model container {host}:{port} gave no answer within {self.answer_deadline_s:g} s"
                ) from None
            except OSError as exc:
                raise Refused(502, f"model container {host}:{port} broke the connection: {exc}") from exc
            finally:
                up_writer.close()
            if not answer:
                raise Refused(502, f"model container {host}:{port} closed the connection without answering")
            return answer


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}


def _content_length(head: bytes) -> int:
    headers = _headers(head)
    if "transfer-encoding" in headers:
        raise Refused(411, "a body needs a Content-Length (no Transfer-Encoding)")
    text = headers.get("content-length", "0") or "0"
    if not text.isdigit():
        raise Refused(400, f"invalid Content-Length {text[:40]!r}")
    if int(text) > MAX_PAYLOAD_BYTES:
        raise Refused(413, f"payload of {int(text):,} bytes is over the {MAX_PAYLOAD_BYTES:,}-byte limit")
    return int(text)


def _wants_close(head: bytes) -> bool:
    return _headers(head).get("connection", "").lower() == "close" or head.startswith(b"HTTP/1.0")


def _with_close(head: bytes) -> bytes:
    """The request's head with `Connection: close`: one request per upstream connection."""
    lines = [
        line for line in head.rstrip(b"\r\n").split(b"\r\n") if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _status(code: int, message: str) -> bytes:
    body = (message + "\n").encode()
    return (
        f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
