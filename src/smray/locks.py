"""One lock for one thing at a time across processes (fcntl: released by the kernel when a holder dies,
so a crash never leaves a stale lock behind)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from smray.errors import UserError

HOME_LOCK = "home.lock"


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[], None] = lambda: None, holder: str = "") -> Iterator[None]:
    """Holds the lock file `path`, waiting for it when another process holds it; `on_wait()` is called
    before that wait: to say why nothing happens, or to refuse to wait by raising. `holder`, where given,
    is the file's content while it is held: who holds it, for another process's `on_wait` to say."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if holder:
                handle.truncate(0)
                handle.write(f"{holder}\n")
                handle.flush()
            yield
        finally:
            if holder:
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def writing_home(home: Path, command: str) -> contextlib.AbstractContextManager[None]:
    """Held by the one command that writes the smray home `home` (`smray run local`, a scheduled run, a
    local deploy or delete) for its life: another is refused at once, told which process holds it."""
    path = home / HOME_LOCK

    def refuse() -> None:
        try:
            held_by = " ".join(path.read_text(errors="replace").split())[:200]
        except OSError:
            held_by = ""
        raise UserError(
            f"another smray command is writing {home}: {held_by or 'a process that has not said which yet'}; "
            "run this once it has ended"
        )

    started = datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
    return exclusive(path, on_wait=refuse, holder=f"pid {os.getpid()} ({command}, started {started})")
