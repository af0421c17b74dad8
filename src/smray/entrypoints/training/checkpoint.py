"""Checkpoints in `/opt/ml/checkpoints` (SageMaker syncs that folder to S3 and restores it when a job is
restarted): the model so far in XGBoost's UBJ format, the rounds done, the evaluation history so far (so
that early stopping and the reported best iteration of a resumed job are those of an uninterrupted one)
and a fingerprint of the hyper-parameters, so a restarted job resumes only what it started.

A tuning job gives all of its trials one checkpoint URI: each training job keeps its checkpoint in a
folder of its own name (TRAINING_JOB_NAME, which SageMaker sets and keeps when it restarts a spot job), so
that no trial overwrites another's or restores another's booster."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xgboost

log = logging.getLogger(__name__)

MODEL_FILE = "checkpoint.ubj"
META_FILE = "checkpoint.json"
JOB_NAME_ENV = "TRAINING_JOB_NAME"


def job_folder(root: Path) -> Path:
    """This training job's own checkpoint folder under the synced one (the folder itself outside a job)."""
    name = os.environ.get(JOB_NAME_ENV, "")
    return root / name if name and "/" not in name and name not in (".", "..") else root


def fingerprint(params: dict[str, Any], features: list[str]) -> str:
    text = json.dumps({"params": params, "features": features}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


History = dict[str, dict[str, list[float]]]  # data set -> metric -> one score per round, as XGBoost logs


@dataclass(frozen=True)
class Saved:
    model: bytearray
    rounds: int
    history: History = field(default_factory=dict)


def save(folder: Path, model: bytes | bytearray, rounds: int, print_: str, history: History) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp_model, tmp_meta = folder / f".{MODEL_FILE}.tmp", folder / f".{META_FILE}.tmp"
    tmp_model.write_bytes(bytes(model))
    tmp_meta.write_text(json.dumps({"rounds": rounds, "fingerprint": print_, "history": history}))
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
    history, rounds = meta.get("history"), int(meta["rounds"])
    lengths = {len(s) for metrics in (history or {}).values() for s in metrics.values()}
    if not isinstance(history, dict) or lengths != {rounds}:  # an earlier smray kept no history
        log.warning("ignoring the checkpoint in %s: it has no evaluation history of its rounds", folder)
        return None
    return Saved(bytearray(model_path.read_bytes()), rounds, history)


def joined(before: History, after: Any) -> History:
    """The history of the rounds before a resume followed by those since."""
    names = {(d, m) for d, metrics in [*before.items(), *after.items()] for m in metrics}
    return {
        d: {m: [*before.get(d, {}).get(m, []), *after.get(d, {}).get(m, [])] for (d2, m) in names if d2 == d}
        for d in {d for d, _ in names}
    }


class EarlyStop(xgboost.callback.TrainingCallback):
    """XGBoost's early stopping (strictly better: lower, or higher where `maximize`), but aware of the
    rounds before a resume: the best iteration is counted from the model's first round and chosen over the
    whole history."""

    def __init__(
        self, patience: int, data: str, metric: str, resumed: Saved | None, maximize: bool = False
    ) -> None:
        self.patience = patience
        self.data, self.metric = data, metric
        self.sign = -1.0 if maximize else 1.0  # compared as a loss: lower is better
        self.done_before = resumed.rounds if resumed else 0
        before = [self.sign * s for s in (resumed.history if resumed else {}).get(data, {}).get(metric, [])]
        self.best_loss = min(before, default=math.inf)
        self.best_iteration = before.index(self.best_loss) if before else -1

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        iteration = self.done_before + epoch
        score = float(evals_log[self.data][self.metric][-1])
        if self.sign * score < self.best_loss:
            self.best_loss, self.best_iteration = self.sign * score, iteration
            model.set_attr(best_score=str(score), best_iteration=str(iteration))
        return iteration - self.best_iteration >= self.patience

    def after_training(self, model: xgboost.Booster) -> xgboost.Booster:
        if self.best_iteration >= 0:  # a resumed model may not have improved since: say which was best
            model.set_attr(
                best_score=str(self.sign * self.best_loss), best_iteration=str(self.best_iteration)
            )
        return model


class Every(xgboost.callback.TrainingCallback):
    """Hands the model and the history so far to `sink(raw_ubj, rounds_done, history)` every `every`
    rounds (where `enabled`). XGBoost counts a resumed run's epochs from 0: `resumed` adds the rest."""

    def __init__(
        self,
        every: int,
        sink: Callable[[bytearray, int, History], None],
        resumed: Saved | None,
        enabled: bool = True,
    ) -> None:
        self.every = every
        self.sink = sink
        self.done_before = resumed.rounds if resumed else 0
        self.before = resumed.history if resumed else {}
        self.enabled = enabled

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        rounds = self.done_before + epoch + 1
        if self.enabled and rounds % self.every == 0:
            self.sink(model.save_raw("ubj"), rounds, joined(self.before, evals_log))
        return False
