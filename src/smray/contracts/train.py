"""The train mode's contract with the workflows that define its jobs.

Metrics: XGBoost's own log line is `[12]\ttrain-rmse:...\tvalidation-rmse:...` (written by
smray.entrypoints.training.metrics); CloudWatch shows the tab as `#011`, which is what the built-in XGBoost
container's regexes match. Ours match both, so the same definitions work on AWS and on a local log. Each
task logs its own metrics (`METRICS`); the first of each is the task's tuning objective (`objective`):
regression minimizes validation rmse, binary maximizes validation auc, multiclass minimizes validation
mlogloss.

Checkpoints and managed spot training: every training job smray defines on AWS (the pipeline's training
or tuning jobs and the retraining workflow's) syncs /opt/ml/checkpoints to a `checkpoints/` prefix under
its run's output, so a restarted job resumes (smray.entrypoints.training.checkpoint); with managed spot
training, an interrupted job is restarted on new capacity and resumes there."""

from __future__ import annotations

from smray.errors import UserError
from smray.schema import Task

TRAIN, VALIDATION, TRANSFORM = "train", "validation", "transform"  # the training job's input channels
CHANNELS = (TRAIN, VALIDATION, TRANSFORM)
CHECKPOINTS = "checkpoints"  # the prefix under a run's output
MAX_RUN_S = 86_400  # a training job's MaxRuntimeInSeconds (the SDK's default)
# XGBoost's eval metrics each task logs, its default tuning objective first. No metric names two tasks.
METRICS: dict[Task, tuple[str, ...]] = {
    Task.REGRESSION: ("rmse", "mae"),
    Task.BINARY: ("auc", "logloss", "error"),
    Task.MULTICLASS: ("mlogloss", "merror"),
}
MAXIMIZED = frozenset({"auc"})  # the metrics where higher is better; lower is better for the others
SETS = ("train", "validation")


# A number only: with the tab logged as `#011`, `\S+` would take `123.4#011validation-rmse:...`
NUMBER = r"([-+]?(?:[0-9]*\.)?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_definitions(task: Task = Task.REGRESSION) -> list[dict[str, str]]:
    """For an Estimator's or a tuning job's metric_definitions: each set's metrics of the task."""
    return [
        {"Name": f"{s}:{m}", "Regex": rf".*\[[0-9]+\].*(?:#011|\t){s}-{m}:{NUMBER}"}
        for s in SETS
        for m in METRICS[task]
    ]


def objective(task: Task) -> tuple[str, str]:
    """The tuning objective of a task: its metric definition's name and SageMaker's direction, e.g.
    ("validation:auc", "Maximize")."""
    metric = METRICS[task][0]
    return f"validation:{metric}", "Maximize" if metric in MAXIMIZED else "Minimize"


def task_of(metric: str) -> Task:
    """The task whose metric this is."""
    for task, names in METRICS.items():
        if metric in names:
            return task
    raise UserError(f"unknown eval metric {metric!r}")


def check_max_wait(max_wait_s: int, max_run_s: int = MAX_RUN_S) -> int:
    """SageMaker's rule: a spot job waits at least as long as it may run."""
    if max_wait_s and max_wait_s < max_run_s:
        raise UserError(
            f"--spot-max-wait {max_wait_s} s is shorter than the training job's maximum run of {max_run_s} s"
        )
    return max_wait_s
