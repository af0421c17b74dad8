"""Time from `compose up` to a formed cluster (every host joined) and to the job's end, for N = 1, 2, 3
hosts of the smray image running `cluster-check`, plus the image's size.

    .venv/bin/python bench/cluster_formation.py [--image smray:latest] [--hosts 1 2 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from smray.workstation.local_cluster import LocalCluster, host_names, new_token


def measure(image: str, count: int, workdir: Path) -> tuple[float, float]:
    local = LocalCluster(
        workdir=workdir, image=image, command=["cluster-check"], hosts=host_names(count), env=new_token()
    )
    local.write()
    started = time.monotonic()
    formed = None
    try:
        local.compose("up", "-d", "--no-color", capture=True)
        while True:
            if formed is None:
                logs = local.compose("logs", "--no-color", local.head, capture=True).stdout
                if "cluster formed" in logs:
                    formed = time.monotonic() - started
            codes = local.exit_codes()
            if codes and all(code >= 0 for code in codes.values()):
                break
            time.sleep(0.2)
        done = time.monotonic() - started
        if formed is None or any(codes.values()):
            raise SystemExit(f"{count}-host run failed: exit codes {codes}")
    finally:
        local.down()
    return formed, done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default="smray:latest")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", args.image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print(f"image {args.image}: {size / 1e6:.0f} MB uncompressed")
    print(f"{'hosts':>5}  {'formed (s)':>10}  {'job done (s)':>12}  runs")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.hosts:
            runs = [measure(args.image, count, Path(tmp) / f"n{count}-{i}") for i in range(args.repeat)]
            formed = statistics.median(r[0] for r in runs)
            done = statistics.median(r[1] for r in runs)
            print(f"{count:>5}  {formed:>10.1f}  {done:>12.1f}  {len(runs)}", flush=True)


if __name__ == "__main__":
    main()
