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
from smray.transform import as_text

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
# The event times a feature store partition (a nanosecond timestamp) can hold: 1970-01-01 to 2262-01-01.
EVENT_TIME_RANGE = (0.0, 9_214_646_400.0)
_NAN_WORDS = ("nan", "+nan", "-nan")


def list_files(root: Path, what: str = "input") -> list[Path]:
    """Every CSV/Parquet file under `root`, in a stable order; none is an error."""
    if not root.exists():
        raise UserError(f"{what} folder {root} does not exist")
    files = table_files(root)
    if not files:
        raise UserError(f"no CSV or Parquet files in {what} folder {root}")
    return files


def table_files(root: Path) -> list[Path]:
    """Every CSV/Parquet file under the folder `root`, in a stable order; maybe none."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


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


def values(frame: pd.DataFrame, schema: Schema, source: Path | str, row_offset: int = 2) -> pd.DataFrame:
    """The schema's value columns as the steps read them. A numeric column (`schema.numeric_columns`) as
    float64: an empty cell is NaN, a number that is not finite comes through as inf or NaN (`not_finite`
    tells them from empty cells); a non-numeric cell or a fractional value in an integral feature is an
    error naming the first offending row. A text column (a string feature, a classification target) as
    text (`transform.as_text`: None where empty, a label read as 1.0 is the label "1"); any value is text.
    The frame's index holds the 0-based row position in its file; reported rows count the CSV header as
    line 1 (row_offset 2). A missing target is no error here: it breaks the rule "<target> present"
    (`quality`)."""
    require_columns(frame, schema.value_columns, source)
    numbers = set(schema.numeric_columns)
    integral = {f.name for f in schema.features if f.type is FeatureType.INTEGRAL}
    columns: dict[str, np.ndarray | pd.Series] = {}
    for column in schema.value_columns:
        if column in numbers:
            columns[column] = _numbers(frame, column, source, row_offset, column in integral)
        else:
            columns[column] = as_text(frame[column])
    return pd.DataFrame(columns, index=frame.index)


def _numbers(
    frame: pd.DataFrame, column: str, source: Path | str, row_offset: int, integral: bool
) -> np.ndarray:
    """One numeric column's values as float64 (`values`)."""
    raw = frame[column]
    if _is_number(raw):  # a Parquet column of numbers: nothing in it can be non-numeric
        numbers = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        nan = np.isnan(numbers)
        bad = nan & raw.notna().to_numpy() & ~_nan_word(raw, nan)
        if bad.any():
            first = _first(frame.index, bad)
            raise UserError(
                f"{source}: column {column} has a non-numeric value {raw[first]!r} at row "
                f"{first + row_offset} ({int(bad.sum())} such rows)"
            )
    if integral and not pd.api.types.is_integer_dtype(raw.dtype):
        fractional = np.isfinite(numbers) & (numbers != np.floor(numbers))
        if fractional.any():
            first = _first(frame.index, fractional)
            raise UserError(
                f"{source}: integral column {column} has the fractional value {raw[first]} at row "
                f"{first + row_offset}"
            )
    return numbers


def empty(values: pd.DataFrame, not_finite: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the column's cell was empty (a missing value; a number that is not finite is not one)."""
    found = values[column].isna().to_numpy()
    if column in not_finite:
        return found & ~not_finite[column].to_numpy()
    return found


def not_finite(values: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Per cell of each numeric column of `values` (as `values` reads them; text columns have no such
    cells): a number that is not finite (inf, or NaN written as a number: an empty cell is a missing
    value, not a NaN)."""
    found = {}
    for column in values.columns:
        if not _is_number(values[column]):
            continue
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
