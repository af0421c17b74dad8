"""Training metrics in the job's log, one line per round in XGBoost's own form, which SageMaker's
metric definitions (smray.contracts.train.metric_definitions) read."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import xgboost


def line(iteration: int, evals_log: dict[str, dict[str, list[float]]], index: int = -1) -> str:
    """The metrics of round `index` of the log (its last by default), numbered `iteration`."""
    parts = [f"[{iteration}]"]
    for data_name, metrics in evals_log.items():
        for metric, values in metrics.items():
            if len(values) > index:
                parts.append(f"{data_name}-{metric}:{values[index]:.5f}")
    return "\t".join(parts)


class LogMetrics(xgboost.callback.TrainingCallback):
    """Prints one evaluation line per round (only where `enabled`: rank 0 of a distributed run),
    numbered from the model's first round (XGBoost counts a resumed run's epochs from 0)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, first_round: int = 0) -> None:
        self.enabled = enabled
        self.stream = stream
        self.first_round = first_round

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if self.enabled:
            print(line(self.first_round + epoch, evals_log), file=self.stream or sys.stdout, flush=True)
        return False
