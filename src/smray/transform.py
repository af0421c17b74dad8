"""The fitted preprocessing that travels with a model, all of it learned on the training split only: the
schema, the StandardScaler's statistics of the numeric features, the categories of each string feature
and, for a classification task, the label set. Preprocess applies it to every split, and the endpoint
applies the same code to raw requests, so training and serving cannot drift apart.

The model sees a float matrix in the schema's feature order: numeric features standardized, a string
feature as its category's code (its position in `categories`), and NaN for a missing value, a category
the training split never had included (XGBoost would send an unseen code down one side of a split as if
it were a known category). A classification target is the label's position in `labels`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smray import schema as schema_mod
from smray.errors import UserError
from smray.schema import Schema, Task

FORMAT = "smray-preprocessing/2"
READS = (FORMAT, "smray-preprocessing/1")  # /1: numeric features and a regression target only
FILE_NAME = "preprocessing.json"


@dataclass(frozen=True)
class Scale:
    mean: float
    std: float


@dataclass(frozen=True)
class Transform:
    schema: Schema
    scale: dict[str, Scale]  # numeric feature -> statistics; features absent here pass through unchanged
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)  # string feature -> categories
    labels: tuple[str, ...] = ()  # classification: the labels, the positive one last for a binary task

    @property
    def feature_types(self) -> list[str]:
        """XGBoost's feature types, in the schema's order: "c" categorical, "q" numeric."""
        categorical = set(self.schema.categorical)
        return ["c" if name in categorical else "q" for name in self.schema.feature_names]

    def encode(self, features: pd.DataFrame) -> np.ndarray:
        """The model's float matrix from raw features (every feature of the schema, in any column order;
        numeric ones as numbers, string ones as anything: each value is read as its text)."""
        names = self.schema.feature_names
        out = np.empty((len(features), len(names)), dtype="float64")
        categorical = set(self.schema.categorical)
        numeric = [i for i, name in enumerate(names) if name not in categorical]
        if numeric:
            columns = [names[i] for i in numeric]
            out[:, numeric] = self.apply_matrix(features[columns].to_numpy("float64"), columns)
        for i, name in enumerate(names):
            if name in categorical:
                out[:, i] = self.codes(name, features[name])
        return out

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`encode` in place of the frame's feature columns (float64); other columns stay as they are."""
        out = frame.copy()
        out[self.schema.feature_names] = self.encode(frame)
        return out

    def codes(self, feature: str, values: pd.Series) -> np.ndarray:
        """A string feature's codes: NaN for a missing value or a category the training split never had."""
        return _positions(as_text(values), self.categories.get(feature, ()))

    def apply_matrix(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        """Standardize numeric columns (a zero std divides by 1, as Ray's StandardScaler does)."""
        mean, std = self._stats(columns)
        return (values - mean) / std

    def invert_matrix(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        """Raw numeric features back from scaled ones (to score another model, with its own scaler)."""
        mean, std = self._stats(columns)
        return values * std + mean

    def _stats(self, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
        stats = [self.scale.get(c, Scale(0.0, 1.0)) for c in columns]
        return np.array([s.mean for s in stats]), np.array([s.std if s.std else 1.0 for s in stats])

    def encode_target(self, target: pd.Series) -> np.ndarray:
        """Regression: the numbers. Classification: each label's position in `labels`, NaN for a label the
        training split never had."""
        if not self.schema.task.classification:
            return target.to_numpy("float64")
        return _positions(as_text(target), self.labels)

    def label_names(self, positions: np.ndarray) -> list[str]:
        """Labels from their positions (as `encode_target` gives them, or a model's predicted class)."""
        return [self.labels[int(p)] for p in positions]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "schema": self.schema.to_dict(),
            "scaler": {c: {"mean": s.mean, "std": s.std} for c, s in self.scale.items()},
        }
        if self.categories:
            out["categories"] = {c: list(v) for c, v in self.categories.items()}
        if self.labels:
            out["labels"] = list(self.labels)
        return out

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


def as_text(values: pd.Series) -> pd.Series:
    """Values as the text a category or label is known by: an integral number as an integer ("1", not
    "1.0": a label read from Parquet as a float is the same label as in a CSV), "" and NaN as missing."""
    if isinstance(values.dtype, pd.StringDtype):  # pandas' text columns: 14x faster than the map below
        return values.where(values != "")
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.map({True: "true", False: "false"}).astype(object)
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy("float64", na_value=np.nan)
        integral = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
        whole = np.where(integral, numbers, 0).astype("int64").astype(str)
        text = np.where(integral, whole, numbers.astype(str))
        return pd.Series(np.where(np.isnan(numbers), None, text), index=values.index, dtype=object)
    text = values.astype(object).where(values.notna(), None)
    return text.map(lambda v: None if v is None or v == "" else str(v))


def _positions(text: pd.Series, known: tuple[str, ...]) -> np.ndarray:
    """Each value's position in `known`, NaN for a missing or unknown one."""
    found = pd.Index(known, dtype=object).get_indexer(text)
    return np.where(found < 0, np.nan, found).astype("float64")


def label_set(seen: Iterable[str], task: Task, positive: str | None) -> tuple[str, ...]:
    """The labels a classification learns, from those the training split holds: in sorted order (by
    value where every label is a number), and for a binary task exactly two, the positive one last."""
    found = {str(v) for v in seen}
    try:
        ordered = sorted(found, key=float)
    except ValueError:
        ordered = sorted(found)
    if task is Task.BINARY:
        if len(ordered) != 2:
            raise UserError(
                f"a binary task needs two labels in the training split, found {len(ordered)}: "
                + ", ".join(ordered[:10])
            )
        if positive is not None:
            if positive not in ordered:
                raise UserError(f"the positive label {positive!r} is not one of the labels {ordered}")
            ordered = [v for v in ordered if v != positive] + [positive]
    elif len(ordered) < 2:
        raise UserError(f"a classification needs at least two labels in the training split, found {ordered}")
    return tuple(ordered)


def category_set(seen: Iterable[str]) -> tuple[str, ...]:
    """A string feature's categories, from those the training split holds, in sorted order."""
    return tuple(sorted({str(v) for v in seen}))


def load(path: Path) -> Transform:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read preprocessing artifact {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") not in READS:
        raise UserError(f"{path} is not a smray preprocessing artifact (format {FORMAT})")
    schema = schema_mod.parse(raw["schema"], source=str(path))
    try:
        scale = {c: Scale(float(s["mean"]), float(s["std"])) for c, s in raw.get("scaler", {}).items()}
        categories = {c: tuple(map(str, v)) for c, v in raw.get("categories", {}).items()}
        labels = tuple(map(str, raw.get("labels", ())))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: malformed preprocessing: {exc}") from exc
    if schema.task.classification and not labels:
        raise UserError(f"{path}: a {schema.task.value} task's preprocessing names no labels")
    missing = sorted(set(schema.categorical) - set(categories))
    if missing:
        raise UserError(f"{path}: no categories for the string feature(s) {', '.join(missing)}")
    return Transform(schema, scale, categories, labels)
