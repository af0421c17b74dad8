"""Request bodies -> feature rows, and predictions -> response bodies, for the content types SageMaker
endpoints commonly take: text/csv, application/json and application/jsonlines.

Rows hold raw features: CSV with a header naming each feature once (in any order; a column that is no
feature is refused, so a misspelled name is never ignored), or positional in the model's feature order;
JSON rows as lists in that order or objects keyed by feature name. A numeric feature's value is a number:
an empty CSV field, a JSON null or a NaN (`nan`, JSON's `NaN`) is a missing value, which XGBoost handles as
its own; an infinity (`inf`, `1e400`) is refused, as is anything else that is not a number, with the row
and column. A string feature's value is its text (a CSV cell as written; a JSON number or boolean as the
training data's text of it, `1` and `1.0` as "1", `true` as "true"); an empty one or null is missing.

Answers per task: a regression's number; a binary task's probability of the positive label (CSV, as
SageMaker's XGBoost answers `binary:logistic`), with the predicted label and each label's probability in
JSON; a multiclass task's predicted label (CSV), with each label's probability in JSON. One answer per row,
in the rows' order: a CSV line or a JSON Lines line per row for Batch Transform's Line split.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smray import metrics
from smray.schema import Task
from smray.transform import as_text

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints' limit
CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
CONTENT_TYPES = (CSV, JSON, JSONLINES)
_ALIASES = {
    "application/x-ndjson": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
}


@dataclass
class RequestError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    kind = (header or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(kind, kind)


def quoted(value: object, limit: int = 60) -> str:
    """`value` as a reason echoes it: quoted, its control characters escaped (one line, whatever it
    holds), and cut after `limit` characters."""
    text = str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def response_type(accept: str | None, request_type: str) -> str:
    """The type to answer in, by the Accept header as RFC 9110 12.5.1 reads it: each type we answer in
    takes the q of the most specific range matching it (`text/csv` over `text/*` over `*/*`), q=0 is not
    acceptable, and the highest q wins. Ties go to the range listed first, then to the request's own type
    (so `*/*`, like no Accept at all, answers in it). 406 when no type we answer in is acceptable."""
    ranges = _accept_ranges(accept)
    if not ranges:
        return request_type
    candidates = list(dict.fromkeys((request_type, *CONTENT_TYPES)))
    best = max(candidates, key=lambda kind: _quality(kind, ranges))  # the first of equals
    if _quality(best, ranges)[0] > 0:
        return best
    raise RequestError(
        406, f"cannot answer in {quoted(accept, 120)}: supported are {', '.join(CONTENT_TYPES)}"
    )


def _accept_ranges(accept: str | None) -> list[tuple[str, float]]:
    """'text/csv;q=0.5, */*' -> [('text/csv', 0.5), ('*/*', 1.0)]; media parameters are not matched."""
    ranges = []
    for part in (accept or "").split(","):
        kind, *params = part.split(";")
        q = 1.0
        for name, _, value in (param.strip().partition("=") for param in params):
            if name.lower() == "q":  # any parameters after it are extensions
                try:
                    q = float(value)
                except ValueError:
                    q = math.nan
                if not 0 <= q <= 1:
                    raise RequestError(400, f"invalid q-value {quoted(value)} in Accept: one from 0 to 1")
                break
        if kind := media_type(kind):
            ranges.append((kind, q))
    return ranges


def _quality(kind: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The q of the most specific range matching `kind` (0 if none does), and minus its place in the
    list (so that, as a key for max(), an earlier range comes first)."""
    specificity = {kind: 2, kind.split("/")[0] + "/*": 1, "*/*": 0}
    matches = [(specificity[r], -i, q) for i, (r, q) in enumerate(ranges) if r in specificity]
    if not matches:
        return 0.0, 0
    _, earlier, q = max(matches)  # the most specific, the first listed of those
    return q, earlier


def check_size(length: int) -> None:
    """A body of `length` bytes is within the endpoint's limit, or a 413."""
    if length > MAX_PAYLOAD_BYTES:
        raise RequestError(413, f"payload of {length:,} bytes is over the {MAX_PAYLOAD_BYTES:,}-byte limit")


def parse(
    body: bytes, content_type: str | None, features: list[str], text: Collection[str] = ()
) -> pd.DataFrame:
    """The request's rows as a frame of the `features` in their order: numeric features as float64 (NaN
    missing), the string features named in `text` as their text (None missing)."""
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise RequestError(
            415, f"unsupported content type {quoted(content_type)}: use {', '.join(CONTENT_TYPES)}"
        )
    check_size(len(body))
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text: {exc}") from exc
    if not decoded.strip():
        raise RequestError(400, "empty request body: send one or more rows of features")
    strings = frozenset(text)
    if kind == CSV:
        return _csv_frame(decoded, features, strings)
    if kind == JSON:
        rows = _json_rows(_load_json(decoded, "body"))
    else:
        rows = [
            _json_row(_load_json(line, f"line {n}"))
            for n, line in enumerate(decoded.splitlines(), 1)
            if line.strip()
        ]
    return _frame(rows, features, strings)


def render(
    predictions: np.ndarray, kind: str, task: Task = Task.REGRESSION, labels: Sequence[str] = ()
) -> bytes:
    """The answer body, a row per prediction: `predictions` as Model.predict gives them for `task`, and
    the model's `labels` (a binary task's positive one last)."""
    if kind == CSV:
        if task is Task.MULTICLASS:
            return _csv_line([labels[i] for i in np.argmax(predictions, axis=1)])
        return "".join(f"{v!r}\n" for v in map(float, predictions)).encode()
    answers = _answers(predictions, task, labels)
    if kind == JSON:
        return json.dumps({"predictions": answers}).encode()
    return "".join(json.dumps(a) + "\n" for a in answers).encode()


def _answers(predictions: np.ndarray, task: Task, labels: Sequence[str]) -> list[dict[str, Any]]:
    """A JSON answer per row. A binary task's predicted label is the positive one when its probability
    is over metrics.THRESHOLD (as evaluate counts it); a multiclass task's, the most probable."""
    if task is Task.REGRESSION:
        return [{"score": v} for v in map(float, predictions)]
    if task is Task.BINARY:
        negative, positive = labels
        return [
            {
                "score": p,
                "predicted_label": positive if metrics.positive(p) else negative,
                "probabilities": {negative: 1.0 - p, positive: p},
            }
            for p in map(float, predictions)
        ]
    return [
        {"predicted_label": labels[int(np.argmax(row))], "probabilities": dict(zip(labels, row, strict=True))}
        for row in np.asarray(predictions, dtype="float64").tolist()
    ]


def _csv_line(values: list[str]) -> bytes:
    """A CSV cell per line, quoted where the text needs it (a comma, a quote)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([v] for v in values)
    return out.getvalue().encode()


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(400, f"invalid JSON in {where}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more digits than Python converts
        raise RequestError(400, f"invalid JSON in {where}: {exc}") from exc


def _csv_frame(body: str, features: list[str], text: frozenset[str]) -> pd.DataFrame:
    first, _, rest = body.lstrip("\r\n").partition("\n")
    header = _csv_header((_csv_rows(first) or [[]])[0], features, text)
    data = rest if header else body
    names = header or features
    if not text:  # all numbers: parsed in C. Text must stay text (a code "01" is not the number 1)
        fast = _csv_numbers(data, len(features))
        if fast is not None:
            if names != features:
                fast = fast[:, [names.index(f) for f in features]]
            return pd.DataFrame(fast, columns=features)
    rows = _csv_rows(data)
    if not rows:
        raise RequestError(400, "no rows in the request")
    for i, row in enumerate(rows, 1):
        _check_width(row, i, features)
    return _columns(rows, names, text, cells_are_text=True)[features]


def _csv_header(cells: list[str], features: list[str], text: frozenset[str]) -> list[str] | None:
    """The first CSV row as a header: when a cell names a feature, or when most of the cells that would
    hold numbers as a row of values are not numbers (else it is that row, None). A header must name each
    feature once: else a 400 that says how not."""
    names = [c.strip() for c in cells]
    numeric = [n for j, n in enumerate(names) if j >= len(features) or features[j] not in text]
    words = [n for n in numeric if n and not _is_number(n)]
    if not set(names) & set(features) and 2 * len(words) <= len(numeric):
        return None
    if sorted(names) != sorted(features):
        raise RequestError(400, f"CSV header: {_name_problems(names, features)}")
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_numbers(text: str, width: int) -> np.ndarray | None:
    """The common case in C: rows of `width` numbers (or NaN) and nothing else. Anything else (quotes,
    empty fields, a wrong count, a bad value) returns None and takes the path that explains."""
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", dtype="float64", ndmin=2, comments=None)
    except ValueError:
        return None
    if values.shape[1] != width or np.isinf(values).any():
        return None
    return values


def _csv_rows(text: str) -> list[list[str]]:
    try:
        return [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise RequestError(400, f"invalid CSV field: {exc}") from exc


def _json_rows(document: Any) -> list[Any]:
    rows = document.get("instances") if isinstance(document, dict) else document
    if isinstance(document, dict) and rows is None:
        rows = [document]  # a single object keyed by feature name
    if not isinstance(rows, list):
        raise RequestError(400, 'expected a list of rows or {"instances": [...]}')
    if rows and not isinstance(rows[0], list | dict):
        rows = [rows]  # one row as a flat list of values
    return [_json_row(r) for r in rows]


def _json_row(row: Any) -> list[Any] | dict[str, Any]:
    if isinstance(row, dict) and set(row) == {"features"}:
        row = row["features"]
    if not isinstance(row, list | dict):
        raise RequestError(
            400, f"a row must be a list of values or an object by feature name, got {quoted(row)}"
        )
    return row


def _frame(rows: list[list[Any] | dict[str, Any]], features: list[str], text: frozenset[str]) -> pd.DataFrame:
    """JSON rows (lists in the features' order, or objects by feature name) as the frame."""
    if not rows:
        raise RequestError(400, "no rows in the request")
    ordered = []
    for i, row in enumerate(rows, 1):
        if isinstance(row, dict):
            if set(row) != set(features):
                raise RequestError(400, f"row {i}: {_name_problems(list(row), features)}")
            row = [row[f] for f in features]
        _check_width(row, i, features)
        ordered.append(row)
    return _columns(ordered, features, text)


def _check_width(row: Sequence[Any], i: int, features: list[str]) -> None:
    if len(row) != len(features):
        raise RequestError(
            400, f"row {i} has {len(row)} value(s); the model takes {len(features)}: {', '.join(features)}"
        )


def _columns(
    rows: list[Sequence[Any]], names: list[str], text: frozenset[str], cells_are_text: bool = False
) -> pd.DataFrame:
    """Rows of values named `names` (each row as wide): a string feature's as text, any other's as
    numbers. `cells_are_text`: every value is a str (CSV's cells)."""
    numeric = [n for n in names if n not in text]
    if len(numeric) == len(names):  # all numbers: one float block, the quickest frame to build
        return pd.DataFrame(_numbers(rows, names, cells_are_text), columns=names)
    place = {n: j for j, n in enumerate(names)}
    numbers = _numbers([[row[place[n]] for n in numeric] for row in rows], numeric, cells_are_text)
    columns = {n: numbers[:, k] for k, n in enumerate(numeric)}
    for name in text.intersection(names):
        j = place[name]
        columns[name] = np.array([_text(row[j], i, name) for i, row in enumerate(rows, 1)], dtype=object)
    return pd.DataFrame({n: columns[n] for n in names})


def _numbers(rows: list[Sequence[Any]], names: list[str], cells_are_text: bool) -> np.ndarray:
    """Rows of numeric features' values as a float matrix (`_number`). Text cells that are each a finite
    number or empty are read in one pass (a third faster); anything else takes the path that names the
    first bad value, row by row."""
    if cells_are_text:
        try:
            values = np.array([float(v or "nan") for row in rows for v in row], dtype="float64")
            if not np.isinf(values).any():
                return values.reshape(len(rows), len(names))
        except ValueError:  # a word, or blanks: below
            pass
    return np.array(
        [_number(v, i, name) for i, row in enumerate(rows, 1) for name, v in zip(names, row, strict=True)],
        dtype="float64",
    ).reshape(len(rows), len(names))


def _name_problems(names: list[str], features: list[str]) -> str:
    """How `names` fail to name each feature once: the unknown, missing and repeated ones."""
    problems = {
        "unknown": [n for n in dict.fromkeys(names) if n not in features],
        "missing": [f for f in features if f not in names],
        "repeated": [n for n in dict.fromkeys(names) if names.count(n) > 1],
    }
    return "; ".join(f"{what} feature(s) {_listed(found)}" for what, found in problems.items() if found)


def _listed(names: list[str], most: int = 8) -> str:
    shown = ", ".join(quoted(n, 40) for n in names[:most])
    return f"[{shown}{f', and {len(names) - most} more' if len(names) > most else ''}]"


def _number(value: Any, row: int, feature: str) -> float:
    """A float, NaN for a missing value: an empty field, null or nan. An infinity (or a number beyond
    float64) is refused: it is no feature's value, and XGBoost does not read it as missing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise RequestError(400, f"row {row}, {feature}: {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond float64
        number = math.inf
    except (TypeError, ValueError):
        raise RequestError(400, f"row {row}, {feature}: {quoted(value, 40)} is not a number") from None
    if math.isinf(number):
        raise RequestError(
            400,
            f"row {row}, {feature}: {quoted(value, 40)} is not a finite number "
            "(a missing value is an empty field, null or nan)",
        )
    return number


def _text(value: Any, row: int, feature: str) -> str | None:
    """A string feature's value: its text, None for a missing value (an empty one, null or NaN). A JSON
    number or boolean is read as the training data's text of it (transform.as_text)."""
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    if isinstance(value, list | dict):
        raise RequestError(400, f"row {row}, {feature}: {quoted(value, 40)} is not text or a number")
    return as_text(pd.Series([value])).iloc[0]
