"""The serving processes (nginx, gunicorn) as children of the mode: started in order, watched, and stopped
in order on SIGTERM, each with a graceful signal and a bound. A child that ends on its own ends them all:
the container exits and its restart policy (or SageMaker) takes over.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from smray.errors import PlatformError

log = logging.getLogger(__name__)

KILL_MARGIN_S = 5.0  # for a child to exit once its own drain bound has passed


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    graceful: signal.Signals  # what makes it finish its requests and exit


@dataclass
class Children:
    drain_s: float  # the whole graceful stop; whatever is left after it (and a few seconds) is killed
    started: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:  # from the first child on, a SIGTERM is a graceful stop
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())

    def start(
        self, name: str, argv: list[str], graceful: signal.Signals, env: dict[str, str] | None = None
    ) -> None:
        self.started.append(Child(name, subprocess.Popen(argv, env=env), graceful))

    def wait_until(self, ready: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and not self.stopping.is_set():  # stopping: run() stops them all
            self._check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise PlatformError(f"{what} not ready within {timeout_s:g} s")
            time.sleep(0.05)

    def run(self) -> None:
        """Until SIGTERM/SIGINT (then a graceful stop, and return) or a child's end (then raise)."""
        while not self.stopping.wait(0.2):
            self._check_alive()
        self.stop()

    def _check_alive(self) -> None:
        for child in self.started:
            code = child.process.poll()
            if code is not None:
                self.stop()
                raise PlatformError(f"{child.name} exited with {code} (see its lines above)")

    def stop(self) -> None:
        """The last started first (the front before what it forwards to): its graceful signal, then the
        time left of the drain."""
        deadline = time.monotonic() + self.drain_s + KILL_MARGIN_S
        for child in reversed(self.started):
            if child.process.poll() is None:
                child.process.send_signal(child.graceful)
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s still running after the %g s drain: killed", child.name, self.drain_s)
                child.process.kill()
                child.process.wait()
