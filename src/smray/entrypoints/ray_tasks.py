"""Work on a given host of the cluster, and its results with the original error, not Ray's wrapper: a
UserError raised on any host reaches the user as its one-line message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def original(exc: BaseException) -> BaseException:
    """The error a task raised, unwrapped from Ray's RayTaskError (which carries a remote traceback)."""
    from ray.exceptions import RayTaskError

    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return exc


def get(refs: Any) -> Any:
    """ray.get, re-raising a task's own error as itself."""
    import ray
    from ray.exceptions import RayTaskError

    try:
        return ray.get(refs)
    except RayTaskError as exc:
        raise original(exc) from exc


def host_cores() -> dict[str, int]:
    """Each live Ray node's CPUs, by node id, in the order of the hosts' addresses."""
    import ray

    nodes = sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeManagerAddress"])
    return {n["NodeID"]: int(n["Resources"].get("CPU", 1)) for n in nodes}


def on_host(node_id: str, fn: Callable, *args: Any, returns: int = 1) -> Any:
    """`fn(*args)` on the host of Ray node `node_id`. On this process's own host it is called right here:
    its result needs no copy through the object store. Elsewhere it is a Ray task pinned to that host,
    which takes one of the host's idle workers (an actor would start a process); the result is then
    ObjectRef(s). `settle` takes both. Call it for the other hosts first: here, it returns when done."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node_id == ray.get_runtime_context().get_node_id():
        return fn(*args)
    pinned = NodeAffinitySchedulingStrategy(node_id, soft=False)
    task = ray.remote(fn).options(num_cpus=0, num_returns=returns, scheduling_strategy=pinned)
    return task.remote(*args)


def settle(results: list) -> list:
    """`on_host`'s results as values: ObjectRefs fetched (a task's error re-raised as itself), values
    computed here as they are."""
    import ray

    refs = [r for r in results if isinstance(r, ray.ObjectRef)]
    fetched = iter(get(refs))
    return [next(fetched) if isinstance(r, ray.ObjectRef) else r for r in results]
