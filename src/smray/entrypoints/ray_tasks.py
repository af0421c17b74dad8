"""Getting results from Ray tasks and actors with the original error, not Ray's wrapper: a UserError
raised on any host reaches the user as its one-line message."""

from __future__ import annotations

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
