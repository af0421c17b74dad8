"""Checkpoints in `/opt/ml/checkpoints` (SageMaker syncs that folder to S3 and restores it when a job is
restarted): the model so far in XGBoost's UBJ format, the rounds done and a fingerprint of the
hyper-parameters, so a restarted job resumes only what it started."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost

log = logging.getLogger(__name__)

MODEL_FILE = "checkpoint.ubj"
META_FILE = "checkpoint.json"


def fingerprint(params: dict[str, Any], features: list[str]) -> str:
    text = json.dumps({"params": params, "features": features}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Saved:
    model: bytearray
    rounds: int


def save(folder: Path, model: bytes | bytearray, rounds: int, print_: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp_model, tmp_meta = folder / f".{MODEL_FILE}.tmp", folder / f".{META_FILE}.tmp"
    tmp_model.write_bytes(bytes(model))
    tmp_meta.write_text(json.dumps({"rounds": rounds, "fingerprint": print_}))
    tmp_model.replace(folder / MODEL_FILE)  # model first: the meta never names a model that is not there
    tmp_meta.replace(folder / META_FILE)


def load(folder: Path, print_: str) -> Saved | None:
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    if not meta_path.exists() or not model_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        log.warning("ignoring an unreadable checkpoint in %s", folder)
        return None
    if meta.get("fingerprint") != print_:
        log.info("ignoring the checkpoint in %s: it was made with other hyper-parameters or features", folder)
        return None
    return Saved(bytearray(model_path.read_bytes()), int(meta["rounds"]))


class Every(xgboost.callback.TrainingCallback):
    """Hands the model to `sink(raw_ubj, rounds_done)` every `every` rounds (where `enabled`)."""

    def __init__(
        self, every: int, sink: Callable[[bytearray, int], None], done_before: int, enabled: bool = True
    ) -> None:
        self.every = every
        self.sink = sink
        self.done_before = done_before
        self.enabled = enabled

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        rounds = self.done_before + epoch + 1
        if self.enabled and rounds % self.every == 0:
            self.sink(model.save_raw("ubj"), rounds)
        return False
