"""What a registry holds, whichever backend: a model version and its approval status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
