"""What a person sees while a local pipeline runs: one line per step as it starts and ends, with the
containers' own output going to a log file instead of the terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

_STARTED = re.compile(r"Starting pipeline step: '(.+)'")
_FAILED_JOB = re.compile(r" ERROR smray[\w.]*: FAILED: (.+)")  # entrypoints.failure's line, in a job's log
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_ENDED = re.compile(r"Pipeline step '(.+)' (SUCCEEDED|FAILED)")


class StepProgress(logging.Handler):
    def __init__(self, out: TextIO, total: int) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.total = total
        self.started: dict[str, float] = {}
        self.pending: tuple[str, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        ended = _ENDED.search(message)
        # local mode logs a Fail step as SUCCEEDED, then FAILED: hold each success until the next line
        if self.pending and not (ended and ended[1] == self.pending[0] and ended[2] == "FAILED"):
            self._ended(*self.pending)
        self.pending = None
        if match := _STARTED.search(message):
            self.started[match[1]] = time.monotonic()
            self._line(f"[{len(self.started)}/{self.total}] {match[1]} ...")
        elif ended and ended[2] == "SUCCEEDED":
            self.pending = (ended[1], ended[2])
        elif ended:
            self._ended(ended[1], ended[2])

    def flush_pending(self) -> None:
        if self.pending:
            self._ended(*self.pending)
            self.pending = None

    def _ended(self, step: str, outcome: str) -> None:
        seconds = time.monotonic() - self.started.get(step, time.monotonic())
        self._line(f"      {step} {outcome.lower()} in {seconds:.0f} s")

    def _line(self, text: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()


class ContainerOutput(io.TextIOBase):
    """The containers' output on its way to the log file. It keeps the last failure reason a job wrote:
    local mode itself says only that docker-compose exited with 1."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.last_failure = ""
        self._partial = ""

    def write(self, text: str) -> int:
        self.file.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if match := _FAILED_JOB.search(_COLOUR.sub("", line)):
                self.last_failure = match[1].strip()
        return len(text)

    def flush(self) -> None:
        self.file.flush()


@contextlib.contextmanager
def steps_to_terminal(log_file: Path, total: int) -> Iterator[ContainerOutput]:
    """Container output (local mode writes it to sys.stdout) goes to `log_file`; step lines to the
    terminal."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    handler = StepProgress(terminal, total)
    sdk_log = logging.getLogger("sagemaker.local")
    previous = sdk_log.level, sdk_log.propagate
    sdk_log.setLevel(logging.INFO)
    sdk_log.propagate = False  # its INFO lines are for the log file, not the terminal
    sdk_log.addHandler(handler)
    try:
        with open(log_file, "a") as log, contextlib.redirect_stdout(ContainerOutput(log)) as output:
            yield output
    finally:
        handler.flush_pending()
        sdk_log.removeHandler(handler)
        sdk_log.setLevel(previous[0])
        sdk_log.propagate = previous[1]
