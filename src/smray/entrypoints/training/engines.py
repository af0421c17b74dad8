"""Two ways to train the same model. One host: plain `xgboost.train` in the job's process, with every
core. Several hosts: XGBoost's own collective across one Ray task per host (what Ray Train's
XGBoostTrainer does underneath, without its ~25 s of fixed cost: its run storage, session and reporting):
a tracker on the head, each task reading its own share of the channel files directly (no Ray Data
ingest), the collective aggregating gradients and metrics. Only rank 0 logs metrics and hands
checkpoints and the final model to a small actor on the head, which owns /opt/ml/checkpoints and
/opt/ml/model."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost

from smray import hyperparameters, transform
from smray.contracts import train as contract
from smray.contracts.resource_config import discover
from smray.entrypoints.training import checkpoint, data
from smray.entrypoints.training.metrics import LogMetrics
from smray.errors import UserError


@dataclass
class Result:
    model: bytearray  # UBJ, trimmed to the best iteration
    best_iteration: int
    best_score: float
    rounds: int  # boosting rounds actually run (early stopping may end sooner)
    engine: str
    seconds: float
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)  # several hosts: host and rows of each rank


@dataclass(frozen=True)
class Job:
    train_dir: Path
    validation_dir: Path
    target: str
    values: dict[str, Any]  # resolved hyper-parameters (hyperparameters.for_task)
    checkpoint_dir: Path
    artifact: transform.Transform | None = None  # preprocess's: the features' order and types, the labels

    @property
    def maximize(self) -> bool:
        """Whether a higher validation score is better (the eval metric's direction)."""
        return self.values["eval_metric"] in contract.MAXIMIZED


def load_matrices(
    job: Job, nthread: int, part: int = 0, parts: int = 1
) -> tuple[xgboost.QuantileDMatrix, xgboost.QuantileDMatrix]:
    """The job's channels (a rank's share when parts > 1) as XGBoost's quantised matrices, the
    validation's bins the training's; a string feature's category codes as XGBoost's native categories.
    The tables they are made from are freed on return."""
    train = data.load(job.train_dir, job.target, part, parts)
    valid = data.load(job.validation_dir, job.target, part, parts, features=train.feature_names)
    types: list[str] | None = None
    if job.artifact is not None:
        if train.feature_names != job.artifact.schema.feature_names:
            raise UserError(
                f"the training channel's features {train.feature_names} differ from the preprocessing "
                f"artifact's {job.artifact.schema.feature_names}"
            )
        types = job.artifact.feature_types
        if job.artifact.schema.task.classification:
            for name, channel in (("train", train), ("validation", valid)):
                _check_labels(name, channel.target.to_numpy(), job.target, len(job.artifact.labels))
    native = {"feature_types": types, "enable_categorical": True} if types and "c" in types else {}
    dtrain = xgboost.QuantileDMatrix(train.features, label=train.target, nthread=nthread, **native)
    dvalid = xgboost.QuantileDMatrix(
        valid.features, label=valid.target, ref=dtrain, nthread=nthread, **native
    )
    return dtrain, dvalid


def _check_labels(channel: str, target: np.ndarray, column: str, classes: int) -> None:
    """A classification's target is a label's position, as preprocess encodes it: 0 .. classes - 1."""
    bad = (target < 0) | (target >= classes) | (target != np.floor(target))
    if bad.any():
        raise UserError(
            f"channel {channel}: target {column} has the value {target[bad][0]:g}, not a label's "
            f"position 0 .. {classes - 1} ({int(bad.sum())} such rows): give preprocess's encoded split"
        )


def boost(
    job: Job,
    dtrain: xgboost.DMatrix,
    dvalid: xgboost.DMatrix,
    nthread: int,
    callbacks: list,
    resume: checkpoint.Saved | None,
    train_metric: bool = True,
) -> tuple[xgboost.Booster, dict]:
    """The one training loop every engine and every tuning trial runs. A trial needs no metric on the
    training rows (the model's history and report do): it costs a pass over them each round."""
    done = resume.rounds if resume else 0
    patience, metric = job.values["early_stopping_rounds"], job.values["eval_metric"]
    if patience:
        callbacks = [*callbacks, checkpoint.EarlyStop(patience, "validation", metric, resume, job.maximize)]
    history: dict = {}
    booster = xgboost.train(
        hyperparameters.xgboost_params(job.values, nthread),
        dtrain,
        num_boost_round=max(job.values["num_round"] - done, 0),
        evals=[(dtrain, "train"), (dvalid, "validation")] if train_metric else [(dvalid, "validation")],
        evals_result=history,
        verbose_eval=False,
        callbacks=callbacks,
        xgb_model=xgboost.Booster(model_file=resume.model) if resume else None,
    )
    return booster, checkpoint.joined(resume.history if resume else {}, history)


def finish(booster: xgboost.Booster, history: dict, engine: str, started: float, metric: str) -> Result:
    scores = history.get("validation", {}).get(metric, [])
    stopped_at = booster.attr("best_iteration")  # set by early stopping
    best = int(stopped_at) if stopped_at is not None and scores else booster.num_boosted_rounds() - 1
    trimmed = booster[: best + 1] if best + 1 < booster.num_boosted_rounds() else booster
    return Result(
        model=trimmed.save_raw("ubj"),
        best_iteration=best,
        best_score=float(scores[min(best, len(scores) - 1)]) if scores else float("nan"),
        rounds=booster.num_boosted_rounds(),
        engine=engine,
        seconds=time.monotonic() - started,
        history=history,
    )


def train_here(job: Job, fingerprint_: str, resume: checkpoint.Saved | None) -> Result:
    started = time.monotonic()
    nthread = len(os.sched_getaffinity(0))
    saver = checkpoint.Every(
        job.values["checkpoint_every"],
        lambda raw, rounds, history: checkpoint.save(job.checkpoint_dir, raw, rounds, fingerprint_, history),
        resume,
    )
    booster, history = boost(
        job,
        *load_matrices(job, nthread),
        nthread,
        [LogMetrics(first_round=saver.done_before), saver],
        resume,
    )
    return finish(booster, history, "xgboost", started, job.values["eval_metric"])


class ModelSink:
    """An actor on the head: takes checkpoints and the final model from rank 0, wherever it runs."""

    def __init__(self, checkpoint_dir: str, fingerprint_: str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.fingerprint = fingerprint_
        self.final: tuple[bytes, dict] | None = None
        self.workers: list[dict[str, Any]] = []

    def worker(self, rank: int, host: str, rows: int) -> None:
        """Each worker says where it ran and how many rows it trained on."""
        self.workers.append({"rank": rank, "host": host, "rows": rows})

    def checkpoint(self, raw: bytes, rounds: int, history: checkpoint.History) -> None:
        checkpoint.save(self.checkpoint_dir, raw, rounds, self.fingerprint, history)

    def finish(self, raw: bytes, history: dict) -> None:
        self.final = (raw, history)

    def result(self) -> tuple[bytes, dict, list[dict[str, Any]]] | None:
        return None if self.final is None else (*self.final, sorted(self.workers, key=lambda w: w["rank"]))


def _train_rank(
    job: Job,
    sink: Any,
    resume: checkpoint.Saved | None,
    nthread: int,
    rank: int,
    world: int,
    tracker: dict[str, Any],
) -> None:
    """One host's share of the training, inside XGBoost's collective (ranks ordered by task id)."""
    import ray

    with xgboost.collective.CommunicatorContext(**tracker, dmlc_task_id=f"rank-{rank:08d}"):
        dtrain, dvalid = load_matrices(job, nthread, rank, world)
        ray.get(sink.worker.remote(rank, discover().current_host, dtrain.num_row()))
        saver = checkpoint.Every(
            job.values["checkpoint_every"],
            lambda raw, rounds, history: ray.get(sink.checkpoint.remote(bytes(raw), rounds, history)),
            resume,
            enabled=rank == 0,
        )
        booster, history = boost(
            job,
            dtrain,
            dvalid,
            nthread,
            [LogMetrics(enabled=rank == 0, first_round=saver.done_before), saver],
            resume,
        )
        if rank == 0:
            ray.get(sink.finish.remote(booster.save_raw("ubj"), history))


def train_on_cluster(job: Job, fingerprint_: str, resume: checkpoint.Saved | None, hosts: int) -> Result:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        PlacementGroupSchedulingStrategy,
    )
    from xgboost.tracker import RabitTracker

    from smray.entrypoints import ray_tasks

    started = time.monotonic()
    head = ray.get_runtime_context().get_node_id()
    sink = (
        ray.remote(num_cpus=0)(ModelSink)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False))
        .remote(str(job.checkpoint_dir), fingerprint_)
    )
    cpus = min(ray_tasks.host_cores().values())
    hosts_group = placement_group([{"CPU": cpus}] * hosts, strategy="STRICT_SPREAD")  # one rank a host
    tracker = RabitTracker(n_workers=hosts, host_ip=ray.util.get_node_ip_address(), sortby="task")
    tracker.start()
    waiting = threading.Thread(target=tracker.wait_for, daemon=True)  # worker_args() needs it running
    waiting.start()
    rank_task = ray.remote(_train_rank)
    collective = tracker.worker_args()  # how each rank finds the tracker
    try:
        ray_tasks.get(
            [
                rank_task.options(
                    num_cpus=cpus,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        hosts_group, placement_group_bundle_index=r
                    ),
                ).remote(job, sink, resume, cpus, r, hosts, collective)
                for r in range(hosts)
            ]
        )
    finally:
        waiting.join(timeout=5)
        remove_placement_group(hosts_group)
    final = ray.get(sink.result.remote())
    if final is None:
        raise RuntimeError("training finished but rank 0 handed over no model")
    raw, history, workers = final
    booster = xgboost.Booster(model_file=bytearray(raw))
    result = finish(booster, history, f"collective x{hosts}", started, job.values["eval_metric"])
    result.workers = workers
    return result
