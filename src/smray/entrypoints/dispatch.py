"""`smray-entrypoint MODE [ARGS]`: the image's ENTRYPOINT.

Reads the job's resource config, forms the Ray cluster where the mode needs one, runs the mode on the
head and reports the outcome the way SageMaker reads it: exit 0 on success; on failure one clear line
in the failure file and exit 1. An unknown mode is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import enum
import importlib
import io
import logging
import os
import signal
import sys
from dataclasses import dataclass

from smray import __version__, errors
from smray.contracts.resource_config import ResourceConfig, discover, job_kind
from smray.entrypoints.failure import report_and_exit, write_failure
from smray.entrypoints.ray_tasks import original
from smray.errors import UserError
from smray.ray_bootstrap import cluster

log = logging.getLogger("smray")

EXIT_FAILURE = 1
EXIT_USAGE = 2
TINI = "/usr/bin/tini"  # the image's init (its ENTRYPOINT)


class Placement(enum.Enum):
    """Where a mode runs in a job of several hosts."""

    CLUSTER = "the head runs it on the job's Ray cluster; the other hosts serve that cluster"
    HEAD = "the head runs it on its own, without Ray (starting Ray takes 5 s); the other hosts end"
    EVERY_HOST = "every container runs it on its own (a serving container)"


@dataclass(frozen=True)
class Mode:
    name: str
    summary: str
    module: str  # imported only for the mode that runs: each mode's libraries take seconds to import
    placement: Placement = Placement.CLUSTER

    def parser(self) -> argparse.ArgumentParser:
        return importlib.import_module(self.module).parser()

    def run(self, config: ResourceConfig, opts: argparse.Namespace) -> None:
        importlib.import_module(self.module).run(config, opts)


_MODES = "smray.entrypoints.modes."
MODES = {
    m.name: m
    for m in (
        Mode("ingest", "raw CSV/Parquet files -> feature group (local store)", _MODES + "ingest"),
        Mode(
            "preprocess",
            "feature group -> scaled train/validation/test + preprocessing artifact",
            _MODES + "preprocess",
        ),
        Mode("train", "distributed XGBoost (optionally tuned) -> /opt/ml/model", _MODES + "train"),
        Mode(
            "evaluate",
            "model + test split -> evaluation.json and a report",
            _MODES + "evaluate",
            Placement.HEAD,
        ),
        Mode(
            "register",
            "model + evaluation -> a new version in the local model registry",
            _MODES + "register",
            Placement.HEAD,
        ),
        Mode("serve", "SageMaker's inference contract on port 8080", _MODES + "serve", Placement.EVERY_HOST),
        Mode(
            "route",
            "a local endpoint's front: forwards each request to its current model container",
            _MODES + "route",
            Placement.EVERY_HOST,
        ),
        Mode(
            "cluster-check",
            "run a task on every host and print its SageMaker host name",
            _MODES + "cluster_check",
        ),
    )
}


class Terminated(errors.PlatformError):
    """SIGTERM: SageMaker stops a job, or docker compose stops a service (a stop from outside, not a
    bug: one line, no traceback)."""


def usage() -> str:
    width = max(len(name) for name in MODES)
    lines = [f"usage: smray-entrypoint MODE [ARGS...]   (smray {__version__})", "", "modes:"]
    lines += [f"  {m.name:<{width}}  {m.summary}" for m in MODES.values()]
    lines += ["", "`smray-entrypoint MODE --help` describes a mode's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    if argv is None and os.getpid() == 1 and os.access(TINI, os.X_OK):
        # A job that replaced the image's ENTRYPOINT (a Processing job's ContainerEntrypoint does) made
        # this process PID 1, which must reap what Ray leaves behind: unreaped, its exited processes stay
        # zombies and `ray stop` waits on them for 20+ s. tini does the reaping and forwards signals.
        os.execv(TINI, [TINI, "--", *sys.orig_argv])
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    mode = MODES.get(argv[0])
    if mode is None:
        print(f"smray-entrypoint: unknown mode {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    kind = job_kind()
    try:  # arguments first: a typo must fail in a second, not after the cluster formed
        opts = mode.parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse already printed its message (or the help) to the console
        if exc.code in (0, None):
            return 0
        write_failure(UserError(f"invalid arguments for mode {mode.name}: {' '.join(argv[1:])}"), kind)
        return EXIT_USAGE
    _configure_logging()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        config = discover()
        log.info(
            "smray %s: mode %s on host %s of %s", __version__, mode.name, config.current_host, config.hosts
        )
        if mode.placement is Placement.CLUSTER:
            cluster.run(
                config, os.environ, lambda: mode.run(config, opts), lambda e: report_and_exit(e, kind)
            )
        elif mode.placement is Placement.EVERY_HOST or config.is_head:
            mode.run(config, opts)
        else:
            log.info("mode %s runs on the head %s alone: nothing to do on this host", mode.name, config.head)
    except BaseException as exc:
        if not errors.expected(original(exc)):
            log.exception("unexpected failure")  # a bug: its traceback belongs in the log
        log.error("FAILED: %s", write_failure(exc, kind))
        return EXIT_FAILURE
    log.info("mode %s succeeded", mode.name)
    return 0


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated("stopped by SIGTERM")


class _LogOutput(io.TextIOWrapper):
    """stdout as what it is in a job, a log (CloudWatch, the local run log) even where a TTY carries it
    (SageMaker local mode gives containers one): Ray Data then logs its progress every 10 s instead of
    redrawing bars in place, which never reach a log."""

    def isatty(self) -> bool:
        return False


def _configure_logging() -> None:
    if sys.stdout.isatty():
        sys.stdout.flush()
        raw = io.FileIO(sys.stdout.fileno(), "wb", closefd=False)
        sys.stdout = _LogOutput(io.BufferedWriter(raw), line_buffering=True)
    logging.basicConfig(
        level=os.environ.get("SMRAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
