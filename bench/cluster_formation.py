"""Time from `compose up` to a formed cluster (every host joined) and to the job's end, for N = 1, 2, 3
hosts of the smray image running `cluster-check`, plus the image's size; and, side by side, the floor for
2 hosts: the same compose services doing nothing but a bare `ray start` (head, then a worker that joins
it) and `ray stop`, from `compose up` to the last exit.

    .venv/bin/python bench/cluster_formation.py [--image smray:latest] [--hosts 1 2 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from smray.ray_bootstrap import auth
from smray.workstation.local_cluster import LocalCluster, host_names, new_token

BARE_HEAD = (
    "ray start --head --port=6379 --include-dashboard=false --disable-usage-stats >/dev/null"
    " && until [ -e /shared/worker-done ]; do sleep 0.05; done; ray stop >/dev/null"
)
BARE_WORKER = (
    "until ray start --address=$HEAD:6379 >/dev/null 2>&1; do sleep 0.1; done;"
    " ray stop >/dev/null; touch /shared/worker-done"
)


def measure(image: str, count: int, workdir: Path, bare: bool = False) -> tuple[float | None, float]:
    """(seconds to a formed cluster, seconds until every host exited) of one job. With `bare`, the same
    compose services run a bare `ray start` and `ray stop` instead of the image's entrypoint."""
    local = LocalCluster(
        workdir=workdir,
        image=image,
        command=["cluster-check"],
        hosts=host_names(count),
        env=new_token() | auth.ray_env(secrets.token_hex(32)),
        volumes={str(workdir / "shared"): "/shared"},
    )
    local.write()
    if bare:
        compose = json.loads(local.compose_file.read_text())
        for host, service in compose["services"].items():
            service["entrypoint"] = ["sh", "-c"]
            service["command"] = [
                BARE_HEAD if host == local.head else BARE_WORKER.replace("$HEAD", local.head)
            ]
        local.compose_file.write_text(json.dumps(compose))
    started = time.time()
    try:
        local.compose("up", "-d", "--no-color", capture=True)
        while True:  # exit codes only: reading logs meanwhile would load the 2 cores the job runs on
            codes = local.exit_codes()
            if codes and all(code >= 0 for code in codes.values()):
                break
            time.sleep(0.2)
        done = time.time() - started
        if any(codes.values()):
            raise SystemExit(f"{count}-host {'bare ' if bare else ''}run failed: exit codes {codes}")
        logs = local.compose("logs", "--no-color", local.head, capture=True).stdout
    finally:
        local.down()
    formed = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) INFO \S+: cluster formed", logs)
    stamp = formed and datetime.strptime(formed.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    return (stamp.timestamp() - started if stamp else None), done


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
    done_by_count = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.hosts:
            runs = [measure(args.image, count, Path(tmp) / f"n{count}-{i}") for i in range(args.repeat)]
            formed = statistics.median(r[0] or float("nan") for r in runs)
            done_by_count[count] = statistics.median(r[1] for r in runs)
            print(f"{count:>5}  {formed:>10.1f}  {done_by_count[count]:>12.1f}  {len(runs)}", flush=True)
        floor = statistics.median(
            measure(args.image, 2, Path(tmp) / f"bare-{i}", bare=True)[1] for i in range(args.repeat)
        )
    print(f"bare 2-host ray start + ray stop: {floor:.1f} s")
    if 2 in done_by_count:
        print(f"2-host cluster-check job / bare: {done_by_count[2] / floor:.2f}x")


if __name__ == "__main__":
    main()
