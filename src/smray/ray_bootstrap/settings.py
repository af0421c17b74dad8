"""Knobs of the cluster bootstrap, read once from the job's environment."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from smray.errors import UserError

ENV_PREFIX = "SMRAY_"


@dataclass(frozen=True)
class ClusterSettings:
    gcs_port: int = 6379
    lifeline_port: int = 6390
    resolve_timeout_s: float = 300.0  # SageMaker may start hosts minutes apart
    join_timeout_s: float = 300.0
    lifeline_silence_s: float = 10.0
    object_store_mib: int = 0  # 0: sized from the container's memory and /dev/shm
    include_dashboard: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        """Each field can be set as SMRAY_<FIELD> (e.g. SMRAY_JOIN_TIMEOUT_S=60)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, raw, type(getattr(cls, f.name)))
        return cls(**values)


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{name} must be true or false, got {raw!r}")
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise UserError(f"{name} must be {noun}, got {raw!r}") from None
    if not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {raw!r}")
    if value < 0:
        raise UserError(f"{name} must not be negative, got {raw!r}")
    if name.endswith("_PORT") and not 1 <= value <= 65535:
        raise UserError(f"{name} must be a port between 1 and 65535, got {raw!r}")
    return value
