"""The quality gate: one metric of the test split's evaluation (evaluation.json), its direction and a
threshold, such as `accuracy >= 0.9` or `rmse <= 15000`. The model is registered when it passes.

Each task has its own metrics (the sections of evaluation.json, in the shapes of SageMaker's model
quality reports) and a default gate that a sound model passes: regression `rmse <= 15000` (the housing
reference; set the threshold for another table), binary `auc >= 0.75`, multiclass `accuracy >= 0.5`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from smray.errors import UserError
from smray.schema import Task

SECTIONS = {
    Task.REGRESSION: "regression_metrics",
    Task.BINARY: "binary_classification_metrics",
    Task.MULTICLASS: "multiclass_classification_metrics",
}
# Each task's metrics, and whether a higher value is better.
METRICS: dict[Task, dict[str, bool]] = {
    Task.REGRESSION: {"rmse": False, "mae": False, "mape": False, "r2": True},
    Task.BINARY: {
        "accuracy": True,
        "precision": True,
        "recall": True,
        "f1": True,
        "auc": True,
        "logloss": False,
    },
    Task.MULTICLASS: {
        "accuracy": True,
        "weighted_precision": True,
        "weighted_recall": True,
        "weighted_f1": True,
        "logloss": False,
    },
}
DEFAULTS = {
    Task.REGRESSION: ("rmse", 15000.0),
    Task.BINARY: ("auc", 0.75),
    Task.MULTICLASS: ("accuracy", 0.5),
}
_EXPRESSION = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(>=|<=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class GateRule:
    task: Task
    metric: str
    threshold: float

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.task][self.metric]

    @property
    def operator(self) -> str:
        return ">=" if self.higher_is_better else "<="

    @property
    def path(self) -> str:
        """Where evaluation.json holds the value (a JsonGet path, and a JSONPath after `$.`)."""
        return f"{SECTIONS[self.task]}.{self.metric}.value"

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def value(self, evaluation: dict[str, Any]) -> float:
        """The gate's metric in an evaluation; a clear error where the evaluation lacks it."""
        found: Any = evaluation
        for key in self.path.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        if not isinstance(found, int | float) or isinstance(found, bool):
            raise UserError(f"the evaluation has no {self.path}: the gate {self} cannot decide")
        return float(found)

    def with_threshold(self, threshold: float) -> GateRule:
        return GateRule(self.task, self.metric, _finite(threshold, str(threshold)))

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {self.threshold:g}"


def default(task: Task) -> GateRule:
    metric, threshold = DEFAULTS[task]
    return GateRule(task, metric, threshold)


def parse(text: str, task: Task) -> GateRule:
    """`metric >= threshold` or `metric <= threshold`, the operator matching the metric's direction."""
    match = _EXPRESSION.match(text)
    if match is None:
        raise UserError(f"gate {text!r}: expected '<metric> >= <number>' or '<metric> <= <number>'")
    metric, operator, number = match.groups()
    known = METRICS[task]
    if metric not in known:
        raise UserError(f"gate {text!r}: a {task.value} model's metrics are {', '.join(known)}")
    rule = GateRule(task, metric, _finite(number, text))
    if operator != rule.operator:
        better = "higher" if rule.higher_is_better else "lower"
        raise UserError(
            f"gate {text!r}: a {better} {metric} is better, so the gate is {metric} {rule.operator} ..."
        )
    return rule


def _finite(number: str | float, text: str) -> float:
    try:
        value = float(number)
    except ValueError:
        raise UserError(f"gate {text!r}: the threshold {number!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"gate {text!r}: the threshold must be a finite number")
    return value
