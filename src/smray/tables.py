"""Reading the user's tables (CSV with a header, or Parquet) and checking them against the schema.

Every check fails with one line that names the file, the column and, where it helps, the row and the
value, so a user can fix the input without reading a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from smray.errors import UserError
from smray.schema import FeatureType, Schema

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
# The event times a feature store partition (a nanosecond timestamp) can hold: 1970-01-01 to 2262-01-01.
EVENT_TIME_RANGE = (0.0, 9_214_646_400.0)
_NAN_WORDS = ("nan", "+nan", "-nan")


def list_files(root: Path, what: str = "input") -> list[Path]:
    """Every CSV/Parquet file under `root`, in a stable order; none is an error."""
    if not root.exists():
        raise UserError(f"{what} folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise UserError(f"no CSV or Parquet files in {what} folder {root}")
    return files


def read(path: Path) -> pd.DataFrame:
    """One file as read, every column as found (CSV cells as strings, so nothing is silently coerced)."""
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: expected a header line and at least one row") from None
    except (pd.errors.ParserError, pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    if frame.empty:
        raise UserError(f"{path} has a header but no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: Path | str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, frame))})"
        )


def numeric(
    frame: pd.DataFrame, schema: Schema, source: Path | str, row_offset: int = 2, scaled: bool = False
) -> pd.DataFrame:
    """The schema's value columns as numbers: a non-numeric cell, a fractional value in an integral
    feature or a missing target is an error naming the first offending row. The frame's index holds the
    0-based row position in its file; reported rows count the CSV header as line 1 (row_offset 2).
    `scaled` data (standardized by preprocess) has no integral columns any more. Numbers that are not
    finite (`inf`, `nan`, `1e400`) come through as inf or NaN: `not_finite` finds them for the rules."""
    require_columns(frame, schema.value_columns, source)
    columns: dict[str, np.ndarray] = {}
    kinds = {f.name: f.type for f in schema.features}
    for column in schema.value_columns:
        raw = frame[column]
        if _is_number(raw):  # a Parquet column of numbers: nothing in it can be non-numeric
            values = raw.to_numpy(dtype="float64", na_value=np.nan)
        else:
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            nan = np.isnan(values)
            bad = nan & raw.notna().to_numpy() & ~_nan_word(raw, nan)
            if bad.any():
                first = _first(frame.index, bad)
                raise UserError(
                    f"{source}: column {column} has a non-numeric value {raw[first]!r} at row "
                    f"{first + row_offset} ({int(bad.sum())} such rows)"
                )
        integral = kinds.get(column) is FeatureType.INTEGRAL and not scaled
        if integral and not pd.api.types.is_integer_dtype(raw.dtype):
            fractional = np.isfinite(values) & (values != np.floor(values))
            if fractional.any():
                first = _first(frame.index, fractional)
                raise UserError(
                    f"{source}: integral column {column} has the fractional value {raw[first]} at row "
                    f"{first + row_offset}"
                )
        columns[column] = values
    nan_target = np.isnan(columns[schema.target])
    missing_target = nan_target & ~_nan_word(frame[schema.target], nan_target)
    if missing_target.any():
        first = _first(frame.index, missing_target)
        raise UserError(
            f"{source}: target {schema.target} is missing (NaN) at row {first + row_offset} "
            f"({int(missing_target.sum())} such rows)"
        )
    return pd.DataFrame(columns, index=frame.index)


def not_finite(values: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Per cell: a number that is not finite (inf, or NaN written as a number: an empty cell is a missing
    value, not a NaN)."""
    found = {}
    for column in values.columns:
        numbers = values[column].to_numpy()
        found[column] = np.isinf(numbers) | _nan_word(raw[column], np.isnan(numbers))
    return pd.DataFrame(found, index=values.index)


def outside_event_time_range(times: pd.Series) -> pd.Series:
    low, high = EVENT_TIME_RANGE
    return ~((times >= low) & (times < high))


def event_times(raw: pd.Series, source: Path | str, column: str, row_offset: int = 2) -> pd.Series:
    """Event times as float seconds since the epoch, from numbers or ISO-8601 strings. Numbers are not
    range-checked here (`outside_event_time_range`): out of range is a data-quality rule."""
    as_number = pd.to_numeric(raw, errors="coerce")
    nan = as_number.isna().to_numpy()
    if (~nan | _nan_word(raw, nan)).all():
        return as_number.astype("float64")
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        first = _first(raw.index, bad.to_numpy())
        raise UserError(
            f"{source}: column {column} has {raw[first]!r} at row {first + row_offset}: "
            "expected seconds since the epoch or an ISO-8601 time"
        )
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def single_event_time(text: str, what: str) -> float:
    """An event time given as an option (--event-time, --as-of): a number or an ISO-8601 time in range."""
    value = float(event_times(pd.Series([text]), what, what)[0])
    if outside_event_time_range(pd.Series([value])).any():
        raise UserError(f"{what} {text} is outside 1970-01-01 .. 2262-01-01")
    return value


def _is_number(raw: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype)


def _nan_word(raw: pd.Series, parsed_nan: np.ndarray) -> np.ndarray:
    """Per cell: the text of a NaN (a number that is not finite, where an empty cell is a missing one).
    Only a cell that parsed to NaN (`parsed_nan`) can be one: the text of those alone is looked at (each
    text column went through this two or three times, all of its cells each time)."""
    found = np.zeros(len(raw), dtype=bool)
    if _is_number(raw) or pd.api.types.is_bool_dtype(raw.dtype) or not parsed_nan.any():
        return found
    cells = raw[parsed_nan]
    words = cells.astype(str).str.strip().str.lower().isin(_NAN_WORDS) & cells.notna()
    found[parsed_nan] = words.to_numpy()
    return found


def _first(index: pd.Index, mask: np.ndarray) -> int:
    """Index label (row position in the file) of the first True."""
    return int(index[np.flatnonzero(mask)[0]])
