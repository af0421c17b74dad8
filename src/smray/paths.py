"""Where SageMaker puts a job's files. One root, `/opt/ml`, which SMRAY_OPT_ML moves (tests, a laptop)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from smray.errors import UserError

ROOT_ENV = "SMRAY_OPT_ML"


def ml_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/opt/ml"))


def training_resource_config() -> Path:
    return ml_root() / "input" / "config" / "resourceconfig.json"


def processing_resource_config() -> Path:
    return ml_root() / "config" / "resourceconfig.json"


def output_dir() -> Path:
    return ml_root() / "output"


HOME_ENV = "SMRAY_HOME"
# SageMaker local mode refuses to mount anything under /root, so root's state cannot live in its home.
ROOT_HOME = Path("/var/opt/smray")


def home() -> Path:
    """smray's own state on a workstation: the local feature store, registry, endpoints and runs.
    SMRAY_HOME, else ~/.smray, or /var/opt/smray for root (its home, /root, cannot be mounted). The CLI
    creates it 0700; the default folder is smray's own, so one an earlier smray left open is closed."""
    raw = os.environ.get(HOME_ENV)
    if raw:
        try:
            path = Path(raw).expanduser()
        except RuntimeError:  # ~name of no such user
            raise UserError(f"{HOME_ENV}={raw}: there is no such user's home") from None
        if path.exists() and not path.is_dir():
            raise UserError(f"{HOME_ENV}={raw} is not a folder")
        return path
    default = ROOT_HOME if os.geteuid() == 0 else Path("~/.smray").expanduser()
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if default.stat().st_mode & 0o077:
            default.chmod(0o700)
    return default
