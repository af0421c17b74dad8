"""The one way smray waits for something: try, and on a failure worth retrying sleep with exponential
backoff until a deadline; then fail with a PlatformError (or the caller's kind of it) that says what did
not happen, how often it was tried and the last thing seen.

Hosts of one job start in parallel (a peer is not reachable yet), containers take seconds to answer,
AWS resources become ready in minutes: every such wait goes through `retry` (an attempt that polls a
condition raises NotYet while it does not hold)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from smray.errors import PlatformError

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0


class NotYet(Exception):
    """Raised by an attempt whose condition does not hold yet; the message says what it saw."""


def retry(
    attempt: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
    error: type[PlatformError] = PlatformError,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt()` until it returns, retrying on `retry_on` (and NotYet) with delays doubling from
    `first_delay_s` to `max_delay_s`; after `timeout_s`, `error` says `what` did not happen."""
    deadline = clock() + timeout_s
    delay = first_delay_s
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except (NotYet, *retry_on) as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                raise error(
                    f"{what} did not happen within {timeout_s:g} s ({tries} attempts, last error: {exc})"
                ) from exc
            if tries == 1:
                log.info("waiting: %s (%s)", what, exc)
            sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay_s)
