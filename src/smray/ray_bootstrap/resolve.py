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


# A refused connection costs nothing: try often, so that a worker starts joining as soon as the head
# listens (with delays doubling to seconds, workers began up to 0.8 s after it did).
PORT_POLL_S = 0.1


def wait_for_port(host: str, ip: str, port: int, timeout_s: float) -> None:
    """Until something listens on ip:port."""
    retry(
        lambda: socket.create_connection((ip, port), timeout=2).close(),
        what=f"host {host} ({ip}) accepting connections on port {port}",
        timeout_s=timeout_s,
        first_delay_s=PORT_POLL_S,
        max_delay_s=PORT_POLL_S,
        error=ClusterError,
    )
