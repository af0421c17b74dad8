"""Files that survive a power cut. The kernel keeps written bytes, and the folder entries that name new or
renamed files, in memory for seconds: a power cut then leaves an empty file, or none, behind a commit that
lists it. So a file is synced before it is renamed into place, its folder after, and both before the
commit that names the file."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def sync(path: Path) -> None:
    """A file's bytes, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_all(paths: Iterable[Path]) -> None:
    for path in set(paths):
        sync(path)


def make_dirs(folder: Path) -> None:
    """`folder` and its missing parents, each one's entry on the disk."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it: its entry is synced there
            made.mkdir()
    sync_all(made.parent for made in missing)


def write_text(path: Path, text: str, keep_existing: bool = False) -> None:
    """`path` holds `text`, whole (a reader sees the old file or the new one), on the disk. With
    `keep_existing`, a file already there stays: the first writer wins."""
    make_dirs(path.parent)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        sync(tmp)
        if keep_existing:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    sync(path.parent)
