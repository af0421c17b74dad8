"""What a registry holds, whichever backend: a model version and its approval status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from smray import gate
from smray.errors import UserError
from smray.schema import Task

# In a version's metrics: the metric of the gate it passed (the version of a SageMaker Model Registry holds
# it as customer metadata, whose values may not hold `>=`)
GATE_METRIC = "gate_metric"


class Approval(StrEnum):
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


@dataclass(frozen=True)
class ModelVersion:
    group: str
    version: int
    status: Approval
    created: str  # ISO-8601, UTC
    artifact: str  # where model.tar.gz lives (a path or an s3:// URI)
    image: str
    # evaluation.json as evaluate writes it (regression_metrics, binary_classification_metrics, ...) and
    # the metric of the gate the version passed (GATE_METRIC)
    metrics: dict[str, Any] = field(default_factory=dict)
    execution: str = ""  # the pipeline execution that produced it
    description: str = ""

    @property
    def arn_like(self) -> str:
        return f"{self.group}/{self.version}"

    def metric(self, name: str) -> float | None:
        """A test metric of the version's evaluation (`rmse`, `accuracy`), where it has one."""
        for section in gate.SECTIONS.values():
            value = self.metrics.get(section, {}).get(name, {}).get("value")
            if isinstance(value, int | float):
                return float(value)
        return None

    def rmse(self) -> float | None:
        return self.metric("rmse")

    def gate_metric(self) -> str | None:
        """The metric the version was gated on: the gate its registration recorded, else its task's
        default gate's; None where its metrics say no task (as SageMaker's registry lists them)."""
        recorded = self.metrics.get(GATE_METRIC)
        try:
            task = task_of(self.metrics)
        except UserError:
            return None
        return recorded if recorded in gate.METRICS[task] else gate.DEFAULTS[task][0]


def task_of(evaluation: dict[str, Any]) -> Task:
    """The task an evaluation is of, by its metrics' section."""
    for task, section in gate.SECTIONS.items():
        if isinstance(evaluation.get(section), dict):
            return task
    raise UserError(f"the evaluation has none of the sections {', '.join(gate.SECTIONS.values())}")


class Registry:
    """What every registry answers from its own `versions` (newest first) and `where` (for messages)."""

    where: str

    def versions(self, group: str, status: Approval | None = None) -> list[ModelVersion]:
        raise NotImplementedError

    def describe(self, group: str, version: int) -> ModelVersion:
        for record in self.versions(group):
            if record.version == version:
                return record
        raise UserError(f"no model version {group}/{version} in {self.where}")

    def latest(self, group: str, status: Approval | None = None) -> ModelVersion | None:
        found = self.versions(group, status)
        return found[0] if found else None
