"""Sizing Ray's object store to what the container really has.

Ray's default (30% of the machine's memory) ignores a container's memory limit and Docker's 64 MiB
/dev/shm, and then silently falls back to a slow disk-backed store. We pick the size ourselves and say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
RAY_MINIMUM = 80 * MIB  # Ray refuses anything below 75 MiB
MEMORY_FRACTION = 0.3  # Ray's own default share of memory
SHM_HEADROOM = 0.9  # leave room in /dev/shm for other users (e.g. PyTorch, NCCL)
SHM = Path("/dev/shm")
SPILL_DIR = Path("/tmp")


@dataclass(frozen=True)
class ObjectStorePlan:
    size_bytes: int
    directory: Path
    shm_free_bytes: int
    memory_bytes: int
    reason: str

    def describe(self) -> str:
        return (
            f"object store: {self.size_bytes // MIB} MiB in {self.directory} "
            f"(/dev/shm free {self.shm_free_bytes // MIB} MiB, memory {self.memory_bytes // MIB} MiB; "
            f"{self.reason})"
        )


def plan(memory_bytes: int, shm_free_bytes: int, requested_bytes: int | None = None) -> ObjectStorePlan:
    """Choose size and place: the requested size or Ray's share of memory, in /dev/shm when it fits
    there (shrunk to fit when shm still holds a useful amount), otherwise on disk under /tmp."""
    want = requested_bytes if requested_bytes else int(memory_bytes * MEMORY_FRACTION)
    reason = "requested" if requested_bytes else f"{MEMORY_FRACTION:.0%} of memory"
    want = max(want, RAY_MINIMUM)
    shm_usable = int(shm_free_bytes * SHM_HEADROOM)
    if want <= shm_usable:
        return ObjectStorePlan(want, SHM, shm_free_bytes, memory_bytes, reason)
    if shm_usable >= RAY_MINIMUM and not requested_bytes:
        return ObjectStorePlan(shm_usable, SHM, shm_free_bytes, memory_bytes, "shrunk to fit /dev/shm")
    return ObjectStorePlan(
        want,
        SPILL_DIR,
        shm_free_bytes,
        memory_bytes,
        f"{reason}; /dev/shm too small, disk-backed and slower: give the container a larger shm size",
    )


def container_memory_bytes() -> int:
    """The memory this container may use: its cgroup limit, else the machine's total."""
    for limit_file in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # cgroup v1 writes a huge number for "no limit"
            return min(int(text), physical_memory_bytes())
    return physical_memory_bytes()


def physical_memory_bytes() -> int:
    """The machine's memory (a container sees its host's)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def shm_free_bytes() -> int:
    try:
        st = os.statvfs(SHM)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def plan_for_this_host(requested_mib: int | None = None) -> ObjectStorePlan:
    requested = requested_mib * MIB if requested_mib else None
    return plan(container_memory_bytes(), shm_free_bytes(), requested)
