"""Request bodies -> feature rows, and predictions -> response bodies, for the content types SageMaker
endpoints commonly take: text/csv, application/json and application/jsonlines.

Rows hold raw features in the model's feature order (CSV may start with a header naming them, in any
order; JSON rows may be objects keyed by feature name). An empty CSV field or a JSON null is a missing
value, which XGBoost handles. Anything else that is not a number is refused with the row and column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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


def response_type(accept: str | None, request_type: str) -> str:
    """The first supported type the Accept header lists; the request's own type for none or */*."""
    for part in (accept or "").split(","):
        kind = media_type(part)
        if kind in CONTENT_TYPES:
            return kind
        if kind in ("", "*/*", "application/*"):
            return request_type
    raise RequestError(406, f"cannot answer in {accept!r}: supported are {', '.join(CONTENT_TYPES)}")


def check_size(length: int) -> None:
    """A body of `length` bytes is within the endpoint's limit, or a 413."""
    if length > MAX_PAYLOAD_BYTES:
        raise RequestError(413, f"payload of {length:,} bytes is over the {MAX_PAYLOAD_BYTES:,}-byte limit")


def parse(body: bytes, content_type: str | None, features: list[str]) -> pd.DataFrame:
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise RequestError(415, f"unsupported content type {content_type!r}: use {', '.join(CONTENT_TYPES)}")
    check_size(len(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise RequestError(400, "empty request body: send one or more rows of features")
    if kind == CSV:
        first, _, rest = text.lstrip("\n").partition("\n")
        header = [c.strip() for c in first.split(",")]
        named = len(header) == len(features) and set(header) == set(features)
        fast = _csv_numbers(rest if named else text, len(features))
        if fast is not None:
            return pd.DataFrame(fast, columns=header if named else features)[features]
        rows = _csv_rows(text, features)
    elif kind == JSON:
        rows = _json_rows(_load_json(text, "body"))
    else:
        rows = [
            _json_row(_load_json(line, f"line {n}"))
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    return _frame(rows, features)


def render(predictions: np.ndarray, kind: str) -> bytes:
    values = [float(v) for v in predictions]
    if kind == CSV:
        return "".join(f"{v!r}\n" for v in values).encode()
    if kind == JSON:
        return json.dumps({"predictions": [{"score": v} for v in values]}).encode()
    return "".join(json.dumps({"score": v}) + "\n" for v in values).encode()


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(400, f"invalid JSON in {where}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more digits than Python converts
        raise RequestError(400, f"invalid JSON in {where}: {exc}") from exc


def _csv_numbers(text: str, width: int) -> np.ndarray | None:
    """The common case in C: rows of `width` finite numbers and nothing else. Anything else (a header,
    quotes, empty fields, a wrong count, a bad value) returns None and takes the path that explains."""
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", dtype="float64", ndmin=2, comments=None)
    except ValueError:
        return None
    if values.shape[1] != width or not np.isfinite(values).all():
        return None
    return values


def _csv_rows(text: str, features: list[str]) -> list[list[Any] | dict[str, Any]]:
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise RequestError(400, f"invalid CSV field: {exc}") from exc
    if [c.strip() for c in rows[0]] and set(c.strip() for c in rows[0]) == set(features):
        header = [c.strip() for c in rows[0]]
        return [dict(zip(header, r, strict=False)) if len(r) == len(header) else r for r in rows[1:]]
    return rows


def _json_rows(document: Any) -> list[Any]:
    rows = document.get("instances") if isinstance(document, dict) else document
    if isinstance(document, dict) and rows is None:
        rows = [document]  # a single object keyed by feature name
    if not isinstance(rows, list):
        raise RequestError(400, 'expected a list of rows or {"instances": [...]}')
    if rows and not isinstance(rows[0], list | dict):
        rows = [rows]  # one row as a flat list of numbers
    return [_json_row(r) for r in rows]


def _json_row(row: Any) -> list[Any] | dict[str, Any]:
    if isinstance(row, dict) and set(row) == {"features"}:
        row = row["features"]
    if not isinstance(row, list | dict):
        raise RequestError(
            400, f"a row must be a list of numbers or an object by feature name, got {row!r:.60}"
        )
    return row


def _frame(rows: list[list[Any] | dict[str, Any]], features: list[str]) -> pd.DataFrame:
    if not rows:
        raise RequestError(400, "no rows in the request")
    values = np.empty((len(rows), len(features)), dtype="float64")
    for i, row in enumerate(rows, 1):
        if isinstance(row, dict):
            unknown = sorted(set(row) - set(features))
            missing = [f for f in features if f not in row]
            if unknown or missing:
                problems = [f"unknown feature(s) {unknown}"] if unknown else []
                problems += [f"missing feature(s) {missing}"] if missing else []
                raise RequestError(400, f"row {i}: {'; '.join(problems)}")
            row = [row[f] for f in features]
        if len(row) != len(features):
            raise RequestError(
                400,
                f"row {i} has {len(row)} value(s); the model takes {len(features)}: {', '.join(features)}",
            )
        for j, value in enumerate(row):
            values[i - 1, j] = _number(value, i, features[j])
    return pd.DataFrame(values, columns=features)


def _number(value: Any, row: int, feature: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise RequestError(400, f"row {row}, {feature}: {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond float64
        raise RequestError(
            400, f"row {row}, {feature}: {str(value)[:40]}... is not a finite number"
        ) from None
    except (TypeError, ValueError):
        raise RequestError(400, f"row {row}, {feature}: {value!r:.40} is not a number") from None
    if math.isinf(number):
        raise RequestError(400, f"row {row}, {feature}: {value!r} is not a finite number")
    return number
