"""The whole workflow at scale: `smray run local --generate N` (2-host processing, the training defaults)
for each size, default 1M and 10M rows, each into a fresh SMRAY_HOME; per step its time and rows/s, the
peak memory of every job container, and the same work in one plain process (pandas + xgboost:
`main_command.plain_floor`) measured in the same run: by default smray's very trials, each for the rounds
it ran in smray, and the final model for its rounds (`--floor replay`: the same work, no scheduling), or
each trial to early stopping (`--floor full`: what one process without a scheduler would do).

Peak memory is what a container could not give back: resident plus shared memory (Ray's object store
lives in /dev/shm), sampled from its cgroup every second. The issue's bound: a quarter of the machine.

  .venv/bin/python bench/scale.py [ROWS ...] [--floor replay|full|none]

smray runs first, then the floor (at 10M rows, `full` takes over an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from main_command import SMRAY, model_metadata, plain_floor, run

from smray.ray_bootstrap import object_store

GIB = 1024**3
CGROUP_V1 = Path("/sys/fs/cgroup/memory/docker")
CGROUP_V2 = Path("/sys/fs/cgroup/system.slice")


def _needed_bytes(container_id: str) -> int | None:
    """A running container's resident + shared memory now, from its cgroup (v1 or v2), or None."""
    for stat, fields in (
        (CGROUP_V1 / container_id / "memory.stat", ("total_rss", "total_shmem")),
        (CGROUP_V2 / f"docker-{container_id}.scope" / "memory.stat", ("anon", "shmem")),
    ):
        try:
            values = dict(line.split() for line in stat.read_text().splitlines())
        except OSError:
            continue
        return sum(int(values.get(f, 0)) for f in fields)
    return None


class PeakMemory(threading.Thread):
    """Samples every container that starts after it does, until stopped: name -> peak bytes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.before = set(self._running())
        self.peaks: dict[str, int] = {}
        self._done = threading.Event()

    @staticmethod
    def _running() -> dict[str, str]:
        out = subprocess.run(
            ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
            capture_output=True,
            text=True,
        ).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def run(self) -> None:
        names: dict[str, str] = {}
        polls = 0
        while not self._done.wait(1.0):
            if polls % 3 == 0:  # new containers appear every few seconds; docker ps costs a little CPU
                names.update({i: n for i, n in self._running().items() if i not in self.before})
            polls += 1
            for container_id, name in list(names.items()):
                now = _needed_bytes(container_id)
                if now is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0), now)
                elif name in self.peaks:  # it exited: its peak is final
                    print(f"  container {name} exited, peak {self.peaks[name] / GIB:.2f} GiB", flush=True)
                    del names[container_id]

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peaks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--floor",
        choices=("replay", "full", "none"),
        default="replay",
        help="the plain one-process floor: smray's trials and rounds replayed (default), each trial to "
        "early stopping, or none",
    )
    args = parser.parse_args()
    machine = object_store.physical_memory_bytes()
    results = []
    for rows in args.rows:  # smray first: a run stopped during the long floor still has its figures
        home = Path(tempfile.mkdtemp(prefix=f"smray-bench-scale-{rows}-"))
        memory = PeakMemory()
        memory.start()
        print(f"--- {rows:,} rows: smray run local (SMRAY_HOME {home})", flush=True)
        wall, steps, metrics = run(home, rows, echo=True)
        peaks = memory.stop()
        subprocess.run([SMRAY, "endpoints", "delete", "housing"], env={**os.environ, "SMRAY_HOME": str(home)})
        report(rows, wall, steps, metrics, peaks, machine)
        floor = None
        if args.floor != "none":
            print(f"--- {rows:,} rows: the plain floor ({args.floor})", flush=True)
            floor, floor_rmse = plain_floor(rows, model_metadata(home) if args.floor == "replay" else None)
            pipeline = sum(steps.values())
            print(
                f"plain process: {floor:.1f} s, test RMSE {floor_rmse:,.0f}; "
                f"pipeline / plain {pipeline / floor:.2f}x, wall / plain {wall / floor:.2f}x",
                flush=True,
            )
        results.append((rows, floor, wall, steps, peaks))
    print("\nsummary")
    print(f"{'rows':>12}{'pipeline':>10}{'wall':>8}{'floor':>8}{'pipeline/floor':>16}{'peak container':>16}")
    for rows, floor, wall, steps, peaks in results:
        pipeline = sum(steps.values())
        ratio = f"{pipeline / floor:>15.1f}x" if floor else f"{'-':>16}"
        print(
            f"{rows:>12,}{pipeline:>8} s{wall:>6.0f} s{floor or 0:>6.0f} s{ratio}"
            f"{max(peaks.values(), default=0) / GIB:>12.2f} GiB"
        )


def report(
    rows: int, wall: float, steps: dict[str, int], metrics: str, peaks: dict[str, int], machine: int
) -> None:
    pipeline = sum(steps.values())
    print(f"\n{rows:,} rows, {os.cpu_count()} cores, {machine / GIB:.0f} GiB")
    print(f"{'step':<24}{'seconds':>9}{'rows/s':>12}")
    for step, seconds in steps.items():
        print(f"{step:<24}{seconds:>9}{rows / max(seconds, 1):>12,.0f}")
    print(f"{'pipeline':<24}{pipeline:>9}   wall {wall:.0f} s; test metrics {metrics}")
    print(
        f"peak memory per container, in the order they started (one job per step, each step's hosts "
        f"algo-1, algo-2; a quarter of the machine: {machine / 4 / GIB:.1f} GiB):"
    )
    for name, peak in peaks.items():
        flag = "  OVER A QUARTER" if peak > machine / 4 else ""
        print(f"  {name:<48}{peak / GIB:>7.2f} GiB{flag}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
