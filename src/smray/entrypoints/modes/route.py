"""`route`: the front of a local endpoint, so a new model version can replace the old one without a
dropped request.

nginx on the endpoint's port, forwarding each request to `<sockets>/current.sock`: a symbolic link to the
Unix socket of the model container serving now. Deploying replaces the link (an atomic rename) once the
new container answers /ping; the kernel follows the link on every new upstream connection, so the next
request goes to the new model while requests already forwarded finish on the old one, and client
connections stay open across the switch (a reload of nginx would close the idle ones, racing their
clients' next requests). A request is never sent twice: one that gets no answer is a 502.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from smray.contracts.resource_config import ResourceConfig
from smray.entrypoints.serving import nginx
from smray.entrypoints.serving.processes import Children
from smray.errors import UserError

log = logging.getLogger(__name__)

CURRENT = "current.sock"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint route", description=__doc__)
    p.add_argument("--sockets", type=Path, default=Path("/sockets"), help=f"holds {CURRENT}")
    p.add_argument("--port", type=int, default=8080)
    nginx.Limits.add_arguments(p)
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    if not opts.sockets.is_dir():
        raise UserError(f"no sockets folder at {opts.sockets}")
    limits = nginx.Limits.from_options(opts)
    runtime = nginx.runtime_dir("smray-route-")
    front = nginx.command(
        runtime, [f"0.0.0.0:{opts.port}"], opts.sockets / CURRENT, "model container", limits
    )
    log.info("route: port %d -> %s", opts.port, opts.sockets / CURRENT)
    children = Children(drain_s=opts.drain_s)
    children.start("nginx", front, signal.SIGQUIT)
    children.run()
