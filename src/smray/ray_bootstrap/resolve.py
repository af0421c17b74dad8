"""Host name resolution with retry. SageMaker host names (algo-1, algo-2-x7k2p) are the only names that
matter: `socket.gethostname()` inside the container is something else."""

from __future__ import annotations

import socket
from collections.abc import Callable

from smray.errors import ClusterError
from smray.retry import retry


def resolve(host: str, timeout_s: float, lookup: Callable[[str], str] = socket.gethostbyname) -> str:
    """The IPv4 address of `host`, retrying until `timeout_s` has passed."""
    return retry(
        lambda: lookup(host), what=f"host name {host!r} resolving", timeout_s=timeout_s, error=ClusterError
    )


def wait_for_port(host: str, ip: str, port: int, timeout_s: float) -> None:
    """Until something listens on ip:port."""
    retry(
        lambda: socket.create_connection((ip, port), timeout=2).close(),
        what=f"host {host} ({ip}) accepting connections on port {port}",
        timeout_s=timeout_s,
        error=ClusterError,
    )
