"""End-to-end wall time of the main command (`smray run local`) on generated data, default 100k rows: a
first run into a fresh SMRAY_HOME, then a second run that reuses what it can (staged input, feature
store, image), side by side. Prints each run's steps and the ratio.

  .venv/bin/python bench/main_command.py [ROWS]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMRAY = str(Path(sys.executable).with_name("smray"))
STEP = re.compile(r"^  (\w+)\s+(Succeeded|Failed)\s+(\d+) s$", re.M)


def run(home: Path, rows: int) -> tuple[float, dict[str, int], str]:
    started = time.monotonic()
    out = subprocess.run(
        [SMRAY, "run", "local", "--generate", str(rows)],
        env={**os.environ, "SMRAY_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    steps = {m[1]: int(m[3]) for m in STEP.finditer(out.stdout)}
    rmse = re.search(r"test metrics\s+(.*)", out.stdout)
    return seconds, steps, rmse[1] if rmse else "?"


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    home = Path(tempfile.mkdtemp(prefix="smray-bench-main-"))
    first = run(home, rows)
    print(f"first run: {first[0]:.0f} s, steps {first[1]}, {first[2]}", flush=True)
    second = run(home, rows)
    print(f"smray run local --generate {rows:,} (defaults: 2-host processing, 1-host training, 8 trials)")
    print(f"{'step':<24}{'first run':>12}{'second run':>12}")
    for step in first[1]:
        print(f"{step:<24}{first[1][step]:>10} s{second[1].get(step, 0):>10} s")
    print(
        f"{'wall time':<24}{first[0]:>10.0f} s{second[0]:>10.0f} s   second/first {second[0] / first[0]:.2f}"
    )
    print(f"test metrics: first {first[2]}; second {second[2]}")
    subprocess.run([SMRAY, "endpoints", "delete", "housing"], env={**os.environ, "SMRAY_HOME": str(home)})


if __name__ == "__main__":
    main()
