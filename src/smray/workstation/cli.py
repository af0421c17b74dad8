"""`smray`: the host-side command line."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import smray
from smray import __version__, errors, paths
from smray.contracts.resource_config import JobKind
from smray.errors import PlatformError, UserError
from smray.hyperparameters import PARAMS
from smray.workstation import datagen, tracking, validation
from smray.workstation.commands import endpoints, models, retraining, run_aws, run_local, schedule, store
from smray.workstation.local_cluster import LocalCluster, host_names, new_token


class Parser(argparse.ArgumentParser):
    """argparse's parser (and every subcommand's: they take their parent's class), whose refusals are one
    line like every other refusal of the CLI: the usage block argparse prints is one --help away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {' '.join(message.split())}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="smray", description="Ray ML workflows on SageMaker and locally.")
    parser.add_argument("--version", action="version", version=f"smray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser(
        "cluster",
        help="run one image mode on a local N-host cluster of containers",
        description="Runs the smray image as an N-host SageMaker-style job with docker compose: each host "
        "its own container and resourceconfig.json, hosts named algo-<i>-<suffix> on one network. Waits "
        "for every host to exit, prints a summary and removes the containers.",
    )
    cluster.add_argument("--hosts", type=int, default=3, help="number of hosts (default: 3)")
    cluster.add_argument("--image", default="smray:latest", help="image to run (default: smray:latest)")
    cluster.add_argument(
        "--kind", choices=["training", "processing"], default="training", help="job kind (default: training)"
    )
    cluster.add_argument("--shm-size", default="256m", help="each container's /dev/shm (default: 256m)")
    cluster.add_argument(
        "--object-store-mib", type=int, default=128, help="Ray object store per host (default: 128)"
    )
    cluster.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go")
    cluster.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST_DIR:CONTAINER_DIR",
        help="a host folder mounted in every host's container (repeatable)",
    )
    cluster.add_argument("mode", help="image mode, e.g. cluster-check")
    cluster.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the mode")
    cluster.set_defaults(func=cmd_cluster)

    data = sub.add_parser("data", help="example and synthetic data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser(
        "generate",
        help="synthetic tables: housing, churn, segments (seeded, any size, CSV or Parquet, in files)",
        description="Writes ROWS synthetic rows plus record_id and event_time, generated file by file (10 "
        "million rows never sit in memory at once): --task regression, houses with the reference table's "
        "columns (the built-in schema); binary, customers who churned or not (yes/no), with text features "
        "and empty cells; multiclass, customers' segments (four labels), likewise. A classification table's "
        "schema is written beside its files as schema.json, for `smray run local --schema`.",
    )
    gen.add_argument(
        "--task", choices=datagen.TASKS, default="regression", help="which table (default: regression)"
    )
    gen.add_argument("--rows", type=int, default=100_000)
    gen.add_argument("--files", type=int, default=4)
    gen.add_argument("--format", choices=["csv", "parquet"], default="csv")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--no-ids", action="store_true", help="omit record_id and event_time, as the reference table"
    )
    gen.add_argument("--out", type=Path, default=Path("data/generated"))
    gen.set_defaults(func=cmd_data_generate)

    build = sub.add_parser(
        "build",
        help="build (and push) the smray image: runs the checkout's build.sh",
        description="Runs build.sh of the smray checkout this smray is installed from (pip install -e), "
        "never another: wheelhouse from the lock file, image tagged smray:<version>, :latest and :<git "
        "revision>. Arguments go to build.sh: --gpu, --push REGISTRY, --ecr, --base-image IMAGE, "
        "--refresh-wheels, --help.",
    )
    build.add_argument("args", nargs=argparse.REMAINDER, help="arguments for build.sh")
    build.set_defaults(func=cmd_build)

    run = sub.add_parser("run", help="run the whole workflow: locally, or as a SageMaker Pipeline on AWS")
    run_sub = run.add_subparsers(dest="run_command", required=True)
    run_local.add_parser(run_sub)
    run_aws.add_parser(run_sub)

    pipeline = sub.add_parser("pipeline", help="the SageMaker Pipeline definition")
    pipeline_sub = pipeline.add_subparsers(dest="pipeline_command", required=True)
    show = pipeline_sub.add_parser("show", help="print the AWS definition JSON")
    run_aws.add_target_arguments(show)
    show.set_defaults(func=run_aws.show)

    models.add_parser(sub)
    endpoints.add_parsers(sub)
    retraining.add_parser(sub)
    schedule.add_parser(sub)
    store.add_parser(sub)

    runs = sub.add_parser("runs", help="every recorded run's parameters and metrics, oldest first")
    runs.set_defaults(func=cmd_runs)
    return parser


TUNED = {p.name for p in PARAMS if p.tune}


def cmd_build(args: argparse.Namespace) -> int:
    script = _own_build_script()
    return subprocess.run(["bash", str(script), *args.args], cwd=script.parent).returncode


def _own_build_script() -> Path:
    """build.sh of the smray checkout this smray runs from (an editable install): the project folder
    above the package, whose pyproject.toml names smray. Never one the working folder is under."""
    package = Path(smray.__file__).resolve().parent
    project = next((d for d in package.parents if (d / "pyproject.toml").is_file()), None)
    if project is not None and (project / "build.sh").is_file():
        try:
            declared = tomllib.loads((project / "pyproject.toml").read_text()).get("project")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            declared = None
        if isinstance(declared, dict) and declared.get("name") == "smray":
            return project / "build.sh"
    raise UserError(
        f"smray build runs the build.sh of the smray checkout smray is installed from, and {package} is "
        "not in one: install smray from its checkout (pip install -e), or run that checkout's ./build.sh"
    )


def cmd_runs(args: argparse.Namespace) -> int:
    history = tracking.history(paths.home())
    if not history:
        print(f"no runs recorded in {paths.home() / tracking.FILE}")
    for r in history:
        when = datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M")
        shown = ", ".join(f"{k} {v:,.4g}" for k, v in sorted(r.metrics.items()))
        tuned = ", ".join(
            f"{k[3:]}={v}" for k, v in sorted(r.params.items()) if k.startswith("hp_") and k[3:] in TUNED
        )
        print(f"{when}  {r.execution}  {r.status:<9} {shown}  [{tuned}]")
    return 0


def cmd_data_generate(args: argparse.Namespace) -> int:
    validation.count(args.rows, "--rows")
    validation.count(args.files, "--files", args.rows)
    validation.count(args.seed, "--seed", least=0)  # NumPy's generators take no negative seed
    validation.folder(args.out, "--out")
    started = time.monotonic()
    result = datagen.generate(
        args.out,
        rows=args.rows,
        files=args.files,
        fmt=args.format,
        seed=args.seed,
        with_ids=not args.no_ids,
        task=args.task,
    )
    size = sum(f.stat().st_size for f in result.files)
    schema = f"; its schema: {result.schema}" if result.schema else ""
    print(
        f"smray data generate: {result.rows:,} rows in {len(result.files)} {args.format} file(s) "
        f"under {args.out} ({size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s){schema}"
    )
    return 0


def _mount(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":")
    if not sep or not source or not target.startswith("/"):
        raise UserError(f"--mount expects HOST_DIR:/CONTAINER_DIR, got {text!r}")
    if not Path(source).is_dir():
        raise UserError(f"--mount: {source} is not a folder")
    return source, target


# Docker's memory sizes: 256m, 1g, 1.5GiB, 1024
DOCKER_SIZE = re.compile(r"[0-9]+(\.[0-9]+)? ?[kmgtp]?i?b?", re.IGNORECASE)


def cmd_cluster(args: argparse.Namespace) -> int:
    hosts = host_names(validation.count(args.hosts, "--hosts", validation.MAX_LOCAL_HOSTS))
    validation.count(args.object_store_mib, "--object-store-mib")
    validation.text(args.image, "--image")
    if not DOCKER_SIZE.fullmatch(args.shm_size):
        raise UserError(f"--shm-size {args.shm_size!r} is not a size, such as 256m or 1g")
    validation.folder(args.runs_dir, "--runs-dir")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    local = LocalCluster(
        workdir=args.runs_dir / f"cluster-{stamp}-{hosts[0].rsplit('-', 1)[-1]}",
        image=args.image,
        command=[args.mode, *args.args],
        hosts=hosts,
        kind=JobKind(args.kind),
        env=new_token(),
        shm_size=args.shm_size,
        object_store_mib=args.object_store_mib,
        volumes=dict(_mount(m) for m in args.mount),
    )
    started = time.monotonic()
    try:
        local.start()
        local.follow()
        codes = local.exit_codes()
    finally:
        local.down()
    elapsed = time.monotonic() - started
    print(
        f"\nsmray cluster: {len(hosts)} hosts, mode {args.mode}, {elapsed:.1f} s, run folder {local.workdir}"
    )
    for host in hosts:
        role = "head" if host == local.head else "worker"
        reason = local.failure(host)
        print(f"  {host}  {role:<6}  exit {codes.get(host, '?')}" + (f"  {reason}" if reason else ""))
    ok = codes.get(local.head) == 0 and all(codes.get(h) == 0 for h in hosts)
    print("result: OK" if ok else "result: FAILED")
    return 0 if ok else 1


def parse(argv: list[str]) -> argparse.Namespace:
    # `smray build --push R`: argparse's REMAINDER will not take an option first, so build.sh gets the rest
    if argv[:1] == ["build"] and argv[1:2] not in (["-h"], ["--help"]):
        return argparse.Namespace(command="build", func=cmd_build, args=argv[1:])
    return build_parser().parse_args(argv)


# The machine's storage refusing a write: a full disk, a quota, a read-only file system. Not smray's bug.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# The same, as SQLite reports it ("database or disk is full", "disk I/O error", a read-only database)
SQLITE_STORAGE_CODES = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    # The CLI says what matters itself; smray's INFO lines (a retry's first wait) are for job logs.
    logging.getLogger("smray").setLevel(logging.WARNING)
    # What smray writes (its home above all: data, models, tokens in job definitions) is its user's alone.
    umask = os.umask(0o077)
    # SIGTERM ends a command as Ctrl-C does: what it started (containers, a deploy's) is removed on the way.
    terminate = signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(args.func(args))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        failure = _storage_error(exc)
        if not errors.expected(failure):
            raise  # a bug: the traceback is what a report needs
        sys.exit(f"smray: {errors.one_line(failure)}")
    finally:
        signal.signal(signal.SIGTERM, terminate)
        os.umask(umask)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _storage_error(exc: Exception) -> Exception:
    """`exc` as a PlatformError where it is the machine's storage refusing a write, else as it is."""
    if isinstance(exc, sqlite3.Error):
        # an extended code (SQLITE_IOERR_WRITE) holds its primary code in its low byte
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        return PlatformError(str(exc)) if code in SQLITE_STORAGE_CODES else exc
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return exc
    return PlatformError(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror))
