"""Append-only JSON-lines files of records (`experiments.jsonl`, `schedule-history.jsonl`): one JSON object
a line, appended whole, read back oldest first."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from smray.errors import UserError

T = TypeVar("T")


def append(path: Path, record: dict[str, Any]) -> None:
    """Appends one line. A crash or a full disk mid-append leaves a torn last line without its newline:
    the next append cuts it off first, so a torn line never ends up between whole ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record) + "\n").encode()
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another appender must not write between the cut and ours
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.seek(0)
                handle.truncate(handle.read().rfind(b"\n") + 1)
        handle.write(line)


def read(path: Path, build: Callable[[dict[str, Any]], T]) -> list[T]:
    """Every record as `build` makes it, oldest first. A torn last line (no newline: what a crash
    mid-append leaves) is ignored; any other line that is not a record is an error naming it."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").split("\n")
    lines.pop()  # what follows the last newline: nothing, or a torn line
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            records.append(build(raw))
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"{path}, line {number}: not a record ({exc}): correct or delete that line"
            ) from None
    return records
