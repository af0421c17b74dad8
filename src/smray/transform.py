"""The fitted preprocessing that travels with a model: the schema and the StandardScaler's statistics
(fitted on the training split only). Preprocess applies it to every split, and the endpoint applies the
same code to raw requests, so training and serving cannot drift apart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smray import schema as schema_mod
from smray.errors import UserError
from smray.schema import Schema

FORMAT = "smray-preprocessing/1"
FILE_NAME = "preprocessing.json"


@dataclass(frozen=True)
class Scale:
    mean: float
    std: float


@dataclass(frozen=True)
class Transform:
    schema: Schema
    scale: dict[str, Scale]  # feature -> statistics; features absent here pass through unchanged

    def apply(self, features: pd.DataFrame) -> pd.DataFrame:
        """Standardize the features (a zero std divides by 1, as Ray's StandardScaler does)."""
        out = features.copy()
        columns = [c for c in self.scale if c in out.columns]
        out[columns] = self.apply_matrix(out[columns].to_numpy("float64"), columns)
        return out

    def apply_matrix(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        """The same on a float matrix whose columns are `columns` (vectorized: the endpoint's hot path)."""
        mean, std = self._stats(columns)
        return (values - mean) / std

    def invert_matrix(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        """Raw features back from scaled ones (to score another model, with its own scaler, on them)."""
        mean, std = self._stats(columns)
        return values * std + mean

    def _stats(self, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
        stats = [self.scale.get(c, Scale(0.0, 1.0)) for c in columns]
        return np.array([s.mean for s in stats]), np.array([s.std if s.std else 1.0 for s in stats])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema": self.schema.to_dict(),
            "scaler": {c: {"mean": s.mean, "std": s.std} for c, s in self.scale.items()},
        }

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE_NAME
        tmp = path.with_suffix(".tmp")
        bad = [c for c, v in self.scale.items() if not (math.isfinite(v.mean) and math.isfinite(v.std))]
        if bad:  # an artifact never holds NaN or Infinity: they would poison every prediction
            raise UserError(f"the scaler of {', '.join(bad)} is not finite: the data has values too large")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
        return path


def load(path: Path) -> Transform:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read preprocessing artifact {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path} is not a smray preprocessing artifact (format {FORMAT})")
    schema = schema_mod.parse(raw["schema"], source=str(path))
    try:
        scale = {c: Scale(float(s["mean"]), float(s["std"])) for c, s in raw.get("scaler", {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed scaler statistics: {exc}") from exc
    return Transform(schema, scale)
