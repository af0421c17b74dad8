"""`route`: the front of a local endpoint, so a new model version can replace the old one without a
dropped request.

An HTTP/1.1 reverse proxy that reads the current upstream (`host:port`) from a file for every request
and opens a fresh upstream connection per request. Deploying writes the new upstream there (atomically)
once the new container answers /ping; requests already sent to the old one finish there, and client
connections stay open across the switch. A request whose upstream refuses or drops the connection
before answering is retried against the (possibly new) upstream for up to --retry-s seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path

from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024


class BadGateway(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint route", description=__doc__)
    p.add_argument("--upstream-file", type=Path, required=True, help="holds host:port of the model container")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--retry-s", type=float, default=10.0)
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    if not opts.upstream_file.is_file():
        raise UserError(f"no upstream file at {opts.upstream_file}")
    asyncio.run(Router(opts.upstream_file, opts.retry_s).serve(opts.port))


class Router:
    def __init__(self, upstream_file: Path, retry_s: float) -> None:
        self.upstream_file = upstream_file
        self.retry_s = retry_s

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
                head = await _read_head(reader)
                if head is None:
                    break
                body = await reader.readexactly(_content_length(head))
                answer = await self._forward(head, body)
                writer.write(answer)
                await writer.drain()
                if _wants_close(head):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except BadGateway as exc:
            writer.write(_status(502, str(exc)))
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
                try:
                    up_writer.write(request)
                    await up_writer.drain()
                    answer = await up_reader.read()  # the upstream closes after one answer
                finally:
                    up_writer.close()
                if answer:
                    return answer
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BadGateway(f"model container {host}:{port} unreachable: {exc}") from exc
            if time.monotonic() > deadline:
                raise BadGateway(f"model container {host}:{port} closed the connection without answering")
            await asyncio.sleep(0.05)


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
    return int(_headers(head).get("content-length", "0") or 0)


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
        f"HTTP/1.1 {code} Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
