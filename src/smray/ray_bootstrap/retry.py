"""Retry with exponential backoff until a deadline: hosts of one job start in parallel, so a peer may not
be reachable yet when we first try."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from smray.errors import ClusterError

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0


def retry(
    attempt: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt()` until it returns, retrying on OSError with delays of 0.2 s doubling to 5 s; after
    `timeout_s` a ClusterError says `what` did not happen, how often it was tried and the last error."""
    deadline = clock() + timeout_s
    delay = FIRST_DELAY_S
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except OSError as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                raise ClusterError(
                    f"{what} did not happen within {timeout_s:g} s ({tries} attempts, last error: {exc})"
                ) from exc
            if tries == 1:
                log.info("waiting: %s (%s)", what, exc)
            sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY_S)
