"""Hyper-parameter tuning inside one training job with Ray Tune: trials sample the declared search space,
run the same training loop as the final model on one core each, spread over every host of the job, and an
ASHA scheduler stops the clearly bad ones early. This is how tuning runs where SageMaker's TuningStep
cannot (local mode)."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, replace
from typing import Any

import xgboost

from smray import hyperparameters
from smray.entrypoints.training import data
from smray.entrypoints.training.engines import Job, boost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    config: dict[str, Any]
    score: float
    rounds: int  # rounds it ran before early stopping or the scheduler ended it


class ReportEachRound(xgboost.callback.TrainingCallback):
    def __init__(self, metric: str) -> None:
        self.metric = metric

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        from ray import tune

        tune.report({"score": evals_log["validation"][self.metric][-1], "rounds": epoch + 1})
        return False


def _trial(config: dict[str, Any], job: Job) -> None:
    trial_job = replace(job, values={**job.values, **config})
    train = data.load(job.train_dir, job.target)
    valid = data.load(job.validation_dir, job.target, features=train.feature_names)
    boost(trial_job, train, valid, 1, [ReportEachRound(job.values["eval_metric"])], None)


def tune(job: Job) -> tuple[dict[str, Any], list[Trial]]:
    """Best hyper-parameters (the job's, overlaid with the best trial's config) and every trial."""
    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    values = job.values
    scheduler = ASHAScheduler(
        max_t=values["num_round"],
        grace_period=min(values["tune_grace_rounds"], values["num_round"]),
        reduction_factor=3,
    )
    tuner = ray_tune.Tuner(
        ray_tune.with_resources(ray_tune.with_parameters(_trial, job=job), {"cpu": 1}),
        param_space=hyperparameters.search_space(),
        tune_config=ray_tune.TuneConfig(
            metric="score",
            mode="min",
            num_samples=values["tune_trials"],
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=values["seed"]),
        ),
        run_config=ray_tune.RunConfig(
            storage_path="/tmp/smray-ray-tune", name=f"tune-{uuid.uuid4().hex[:8]}", verbose=0
        ),
    )
    grid = tuner.fit()
    trials = []
    for result in grid:
        if result.error:
            raise result.error
        metrics = result.metrics or {}
        trials.append(
            Trial(
                config={k: result.config[k] for k in hyperparameters.search_space()},
                score=float(metrics.get("score", math.nan)),
                rounds=int(metrics.get("rounds", 0)),
            )
        )
    best = grid.get_best_result(metric="score", mode="min")
    best_config = {k: best.config[k] for k in hyperparameters.search_space()}
    log.info("tuning: best %s = %.4f with %s", values["eval_metric"], best.metrics["score"], best_config)
    return {**values, **best_config}, sorted(trials, key=lambda t: t.score)
