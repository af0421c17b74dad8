"""How a job reports failure: one clear line in the file SageMaker shows as the job's failure reason,
the details in the log, and a non-zero exit code."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NoReturn

from smray import errors, paths
from smray.contracts.resource_config import JobKind
from smray.entrypoints.ray_tasks import original

log = logging.getLogger(__name__)

# Training jobs show /opt/ml/output/failure as FailureReason; Processing jobs show
# /opt/ml/output/message as ExitMessage (first 1 KB of each).
FAILURE_FILES = {
    JobKind.TRAINING: "failure",
    JobKind.PROCESSING: "message",
    JobKind.LOCAL: "failure",
}
MAX_REASON_BYTES = 1024


def failure_file(kind: JobKind) -> Path:
    return paths.output_dir() / FAILURE_FILES[kind]


def write_failure(exc: BaseException, kind: JobKind) -> str:
    reason = errors.one_line(original(exc))  # a Ray task's error, not Ray's wrapper of it
    encoded = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    path = failure_file(kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(encoded + "\n")
    except OSError as write_error:  # the log still carries the reason
        log.error("could not write %s: %s", path, write_error)
    return reason


def report_and_exit(exc: BaseException, kind: JobKind) -> NoReturn:
    """For a job that must stop now (a thread that cannot raise into the main one)."""
    log.error("FAILED: %s", write_failure(exc, kind))
    logging.shutdown()
    os._exit(1)
