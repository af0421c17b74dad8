"""What a registry holds, whichever backend: a model version and its approval status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from smray.errors import UserError


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
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation.json as evaluate writes it
    execution: str = ""  # the pipeline execution that produced it
    description: str = ""

    @property
    def arn_like(self) -> str:
        return f"{self.group}/{self.version}"

    def rmse(self) -> float | None:
        value = self.metrics.get("regression_metrics", {}).get("rmse", {}).get("value")
        return float(value) if value is not None else None


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
