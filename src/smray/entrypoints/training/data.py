"""A training channel (`/opt/ml/input/data/<name>/`): CSV files with a header or Parquet files, as
preprocess writes them or as a user brings them. The target is one named column, the features all others.

Every column holds numbers: preprocess encodes the features (standardized numbers, a string feature's
category codes) and the target (a number, or a label's position in the preprocessing's labels). A missing
feature is NaN and stays NaN (XGBoost learns where to send it); a missing target is an error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smray import tables
from smray.errors import UserError


@dataclass
class Channel:
    features: pd.DataFrame
    target: pd.Series

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)


def load(
    folder: Path, target: str, part: int = 0, parts: int = 1, features: list[str] | None = None
) -> Channel:
    """The channel's rows (a worker's share when parts > 1: files part, part+parts, ...; or, with fewer
    files than parts, every parts-th row), the features in the order of `features` when given (as the
    model's feature types are). All columns must be numbers (a missing feature is NaN), the target never
    missing."""
    files = tables.list_files(folder, what=f"channel {folder.name}")
    if len(files) >= parts:
        frames = [tables.read(f) for f in files[part::parts]]
    else:
        frames = [tables.read(f).iloc[part::parts] for f in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if target not in frame.columns:
        raise UserError(
            f"channel {folder.name}: no target column {target!r} (columns: {', '.join(frame.columns)})"
        )
    names = [c for c in frame.columns if c != target]
    if features is not None:
        if sorted(names) != sorted(features):
            raise UserError(
                f"channel {folder.name} has features {names}, but the training channel has {features}"
            )
        names = features
    values = pd.DataFrame(index=frame.index)
    for column in [target, *names]:
        raw = frame[column]
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(
                f"channel {folder.name}: column {column} has a non-numeric value {raw.iloc[row]!r}"
            )
        infinite = np.isinf(numbers.to_numpy())
        if infinite.any():
            row = int(np.flatnonzero(infinite)[0])
            raise UserError(
                f"channel {folder.name}: column {column} has the value {raw.iloc[row]!r}, which is not a "
                f"finite number ({int(infinite.sum())} such rows): fix or quarantine them before training"
            )
        values[column] = numbers
    if values[target].isna().any():
        raise UserError(
            f"channel {folder.name}: target {target} is missing in {int(values[target].isna().sum())} rows"
        )
    return Channel(features=values[names], target=values[target])
