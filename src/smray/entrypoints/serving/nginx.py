"""nginx as the front of `serve` (before gunicorn) and of a local endpoint (before its model container):
it holds the connections, buffers slow clients, enforces the body limit and the deadlines, and answers
what it refuses with a one-line reason. It never retries a request (`proxy_next_upstream off`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from smray.contracts.payload import MAX_PAYLOAD_BYTES
from smray.errors import PlatformError

MAX_HEADER_BYTES = 16 * 1024  # per header line (and the request line: more is a 414); more is a 431
# Requests in progress at once from one client address (nginx counts a request once its head is read;
# idle connections are bounded by keepalive_timeout, slow heads by the client timeout): one client cannot
# queue more than this, whatever it sends. 64 is far above what one well-behaved caller keeps in flight
# against a few workers, and far below the 4,096 connections the front holds.
REQUESTS_PER_CLIENT = 64

_CONTROL = r"[\x00-\x08\x0a-\x1f\x7f]"  # in a header value: gunicorn refuses it, nginx passes it


@dataclass(frozen=True)
class Limits:
    client_s: float  # for a client's head, and between two reads of its body: 408 or closed after it
    answer_s: float  # for the upstream to answer: 504 after it
    drain_s: float  # on a graceful stop, for requests in flight: closed after it
    per_client: int = REQUESTS_PER_CLIENT  # requests in progress from one client address: 429 over it

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """60 s to answer: what SageMaker gives a real-time invocation."""
        p.add_argument(
            "--client-timeout-s", type=float, default=10.0, help="for a head, and between body reads"
        )
        p.add_argument("--answer-deadline-s", type=float, default=60.0, help="for the model to answer")
        p.add_argument(
            "--drain-s",
            type=float,
            default=float(os.environ.get("SMRAY_SERVE_DRAIN_S", "30")),
            help="on SIGTERM, for requests in flight",
        )
        p.add_argument(
            "--client-requests",
            type=int,
            default=REQUESTS_PER_CLIENT,
            help="requests in progress at once from one client address (429 over it)",
        )

    @classmethod
    def from_options(cls, opts: argparse.Namespace) -> Limits:
        return cls(
            client_s=opts.client_timeout_s,
            answer_s=opts.answer_deadline_s,
            drain_s=opts.drain_s,
            per_client=opts.client_requests,
        )


def _refusals(upstream_role: str, limits: Limits) -> dict[int, tuple[int, str]]:
    """nginx's own error statuses -> the status and one-line reason the client gets."""
    return {
        400: (400, "bad request: a malformed request line, header or Content-Length"),
        405: (405, "method not allowed"),
        408: (408, "the request was not sent in time"),
        411: (411, "send a Content-Length (or a chunked body)"),
        413: (413, f"payload over the {MAX_PAYLOAD_BYTES:,}-byte limit"),
        414: (414, f"request line over {MAX_HEADER_BYTES:,} bytes"),
        429: (429, f"over {limits.per_client} requests in progress from one client address"),
        494: (431, f"a request header is over {MAX_HEADER_BYTES:,} bytes"),
        500: (500, "internal error in the front"),
        501: (501, "unsupported Transfer-Encoding: send a Content-Length or a chunked body"),
        502: (502, f"the {upstream_role} closed the connection or is not answering"),
        503: (503, f"the {upstream_role} is not available"),
        504: (504, f"the {upstream_role} did not answer in time"),
        505: (505, "unsupported HTTP version: use HTTP/1.1"),
    }


# One line a request (SMRAY_SERVE_ACCESS_LOG=1): its time, status, sizes, and the caller's X-Request-Id.
ACCESS_FORMAT = '$msec "$request" $status $request_length $request_time id=$http_x_request_id'


def runtime_dir(prefix: str) -> Path:
    """A private folder for nginx's pid, config and temporary files (and whatever else the mode keeps
    beside them), which nginx's workers, running as nobody, can enter."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def command(
    runtime: Path,
    listen: list[str],
    upstream_socket: Path,
    upstream_role: str,
    limits: Limits,
    access_log: bool = False,
) -> list[str]:
    """Writes `runtime`/nginx.conf; returns the command that runs nginx on it, in the foreground."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise PlatformError("nginx is not installed: the image installs it (apt-get install nginx)")
    conf = runtime / "nginx.conf"
    conf.write_text(_config(listen, upstream_socket, upstream_role, runtime, limits, access_log))
    return [binary, "-p", str(runtime), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]


def _config(
    listen: list[str],
    upstream_socket: Path,
    upstream_role: str,
    runtime: Path,
    limits: Limits,
    access_log: bool = False,
) -> str:
    """A whole nginx.conf: one worker, errors to stderr (requests to stdout with `access_log`), every
    temporary file under `runtime`."""
    requests = (
        f"log_format requests '{ACCESS_FORMAT}';\n    access_log /dev/stdout requests;"
        if access_log
        else "access_log off;"
    )
    pages = "\n".join(
        f"        error_page {code} ={status} /.smray/{code};\n"
        f'        location = /.smray/{code} {{ internal; default_type "text/plain; charset=utf-8"; '
        f'return {status} "{reason}\\n"; }}'
        for code, (status, reason) in _refusals(upstream_role, limits).items()
    )
    listens = "\n".join(f"        listen {address} backlog=1024;" for address in listen)
    temp = "\n".join(
        f"    {kind}_temp_path {runtime / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
worker_processes 1;
pid {runtime / "nginx.pid"};
error_log stderr error;  # not 'warn': a body spilled to a temporary file is routine
worker_shutdown_timeout {limits.drain_s:g}s;
events {{ worker_connections 4096; }}
http {{
    {requests}
    server_tokens off;
{temp}
    client_header_timeout {limits.client_s:g}s;
    client_body_timeout {limits.client_s:g}s;
    send_timeout {limits.answer_s:g}s;
    client_max_body_size {MAX_PAYLOAD_BYTES};
    client_body_buffer_size 256k;  # a 1000-row CSV in memory; bigger bodies go to a temporary file
    large_client_header_buffers 4 {MAX_HEADER_BYTES};
    keepalive_timeout 65s;
    # Unix-socket connections (a local endpoint's router: every client of the endpoint) are not counted.
    map $remote_addr $client {{ "unix:" ""; default $binary_remote_addr; }}
    limit_conn_zone $client zone=clients:1m;
    limit_conn clients {limits.per_client};
    limit_conn_status 429;
    limit_conn_log_level warn;  # below error_log's level: a refusal is the client's, not ours
    # for the check in `location /`: a control character in a header passed on to the model
    map "$content_type$http_accept$http_x_request_id" $control_in_header {{ "~{_CONTROL}" 1; default ""; }}
    server {{
{listens}
        location / {{
            # What gunicorn would refuse with an HTML page, refused here with the one-line 400: a target
            # that is not printable ASCII (RFC 9112 3.2), control characters in a header passed on.
            if ($request_uri ~ "[^!-~]") {{ return 400; }}
            if ($control_in_header) {{ return 400; }}
            proxy_pass http://unix:{upstream_socket}:;
            proxy_next_upstream off;
            proxy_connect_timeout 5s;
            proxy_send_timeout {limits.answer_s:g}s;
            proxy_read_timeout {limits.answer_s:g}s;
            proxy_request_buffering on;
            proxy_pass_request_headers off;  # only what the model reads, with Host and the body's length
            proxy_set_header Content-Type $content_type;
            proxy_set_header Accept $http_accept;
            proxy_set_header X-Request-Id $http_x_request_id;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
        }}
{pages}
    }}
}}
"""
