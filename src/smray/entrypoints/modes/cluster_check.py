"""`cluster-check`: the smallest proof that the cluster formed. Runs one task pinned to every live node;
each reports the SageMaker host name from its own resource config (not gethostname, which is the
container id). Fails unless every host of the job answered exactly once."""

from __future__ import annotations

import argparse
import logging
import time

from smray.contracts.resource_config import ResourceConfig, discover
from smray.errors import ClusterError

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smray-entrypoint cluster-check", description=__doc__)
    p.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep each node's task running this long (fault drills: kill a host meanwhile)",
    )
    return p


def _whoami(hold_s: float) -> tuple[str, str]:
    import ray

    time.sleep(hold_s)
    return discover().current_host, ray.util.get_node_ip_address()


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = time.monotonic()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    task = ray.remote(num_cpus=0)(_whoami)
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            opts.hold
        )
        for n in nodes
    ]
    answers = sorted(ray.get(refs))
    for host, ip in answers:
        print(f"cluster-check: task ran on {host} ({ip})", flush=True)
    answered = [host for host, _ in answers]
    if answered != list(config.hosts):
        missing = sorted(set(config.hosts) - set(answered))
        raise ClusterError(
            f"cluster-check: expected one answer from each of {', '.join(config.hosts)}; got {answered}"
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    print(
        f"cluster-check: OK, {len(answered)}/{len(config.hosts)} hosts answered in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
