"""The declared shape of a data set: which columns are features (and their types), which one is the
target, which ones identify a record and time it, and the row-level data-quality rules with a policy
each. Every step reads the data through this declaration, so a user's own table works by swapping the
schema file; nothing in the steps names a housing column.

A schema file is JSON:

    {"name": "housing", "target": "PRICE", "record_id": "record_id", "event_time": "event_time",
     "features": [{"name": "YEAR_BUILT", "type": "integral"}, {"name": "SQUARE_FEET", "type": "fractional"}],
     "rules": [{"column": "PRICE", "min": 0, "policy": "quarantine"}], "non_finite": "quarantine"}

    {"name": "churn", "target": "churned", "task": "binary", "positive": "yes",
     "features": [{"name": "state", "type": "string"}, {"name": "minutes", "type": "fractional"}]}

`task` is `regression` (the default: a numeric target), `binary` or `multiclass` (a target of labels, text
or integers; `positive` names the binary task's positive label, by default the last in sorted order).
A `string` feature (Feature Store's String) is a categorical feature. Any feature may be missing (an empty
cell); a row without a target breaks the implicit rule "target present", whose policy is `missing_target`
(default quarantine). A value that is not a finite number (`inf`, `nan`, `1e400`) in a numeric column, and
an event time outside 1970 .. 2262, breaks the implicit rule "finite", whose policy is `non_finite`
(default quarantine).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from smray.errors import UserError

# SageMaker's rules: FeatureDefinition.FeatureName, and the model package group / endpoint name (the
# stricter of those the table's name is used for). The offline store adds three columns of its own.
FEATURE_NAME = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
TABLE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
RESERVED = ("is_deleted", "write_time", "api_invocation_time")
MAX_FEATURES = 2_500  # Feature Store's limit of feature definitions in a feature group: every column


class FeatureType(Enum):
    """SageMaker Feature Store's types; a String feature is a categorical one."""

    INTEGRAL = "integral"
    FRACTIONAL = "fractional"
    STRING = "string"


class Task(Enum):
    REGRESSION = "regression"  # a number
    BINARY = "binary"  # one of two labels
    MULTICLASS = "multiclass"  # one of several labels

    @property
    def classification(self) -> bool:
        return self is not Task.REGRESSION


class Policy(Enum):
    QUARANTINE = "quarantine"  # set the offending rows aside in a side output, count them, go on
    FAIL = "fail"  # stop the step with a clear error


@dataclass(frozen=True)
class Feature:
    name: str
    type: FeatureType


@dataclass(frozen=True)
class Rule:
    """A bound on one column's values: rows outside [min, max] break it."""

    column: str
    min: float | None = None
    max: float | None = None
    policy: Policy = Policy.QUARANTINE

    def describe(self) -> str:
        bounds = [
            f">= {self.min:g}" if self.min is not None else "",
            f"<= {self.max:g}" if self.max is not None else "",
        ]
        return f"{self.column} {' and '.join(b for b in bounds if b)}"


@dataclass(frozen=True)
class Schema:
    name: str
    target: str
    features: tuple[Feature, ...]
    record_id: str = "record_id"
    event_time: str = "event_time"
    rules: tuple[Rule, ...] = field(default=())
    non_finite: Policy = Policy.QUARANTINE
    task: Task = Task.REGRESSION
    positive: str | None = None  # binary: the positive label (default: the last in sorted order)
    missing_target: Policy = Policy.QUARANTINE

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        """The string features: categories, to the model."""
        return [f.name for f in self.features if f.type is FeatureType.STRING]

    @property
    def numeric_columns(self) -> list[str]:
        """The value columns that hold numbers: the numeric features, and a regression target."""
        target = [self.target] if not self.task.classification else []
        return target + [f.name for f in self.features if f.type is not FeatureType.STRING]

    @property
    def text_columns(self) -> list[str]:
        """The value columns that hold text: the string features, and a classification target."""
        target = [self.target] if self.task.classification else []
        return target + self.categorical

    @property
    def value_columns(self) -> list[str]:
        """The columns a model sees: the target first, then the features."""
        return [self.target, *self.feature_names]

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Enum):
                return value.value
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items() if v is not None}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def parse(raw: Any, source: str = "schema") -> Schema:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a JSON object")
    known = {"name", "target", "features", "record_id", "event_time", "rules", "non_finite"}
    unknown = set(raw) - known - {"task", "positive", "missing_target"}
    if unknown:
        raise UserError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    for key in ("name", "target"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise UserError(f"{source}: {key!r} must be a non-empty string")
    features_raw = raw.get("features")
    if not isinstance(features_raw, list) or not features_raw:
        raise UserError(f"{source}: 'features' must be a non-empty list")
    features = tuple(_feature(f, source) for f in features_raw)
    schema = Schema(
        name=raw["name"],
        target=raw["target"],
        features=features,
        record_id=str(raw.get("record_id", "record_id")),
        event_time=str(raw.get("event_time", "event_time")),
        rules=tuple(_rule(r, source) for r in raw.get("rules", [])),
        non_finite=_policy(raw.get("non_finite", "quarantine"), f"{source}: non_finite"),
        task=_task(raw.get("task", "regression"), source),
        positive=_positive(raw, source),
        missing_target=_policy(raw.get("missing_target", "quarantine"), f"{source}: missing_target"),
    )
    if not TABLE_NAME.match(schema.name):
        raise UserError(
            f"{source}: name {schema.name!r} names the feature group, model package group and endpoint: "
            "letters, digits and '-', starting with a letter or digit, at most 63 characters"
        )
    names = [schema.record_id, schema.event_time, *schema.value_columns]
    if len(names) > MAX_FEATURES:
        raise UserError(
            f"{source}: {len(names):,} columns with the target, record id and event time: a Feature Store "
            f"feature group takes at most {MAX_FEATURES:,}"
        )
    for name in names:
        if not FEATURE_NAME.match(name) or name in RESERVED:
            raise UserError(
                f"{source}: column name {name!r} is not a valid SageMaker Feature Store feature name "
                f"(letters, digits, '-' and '_', starting and ending with a letter or digit, at most 64; "
                f"not {', '.join(RESERVED)})"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{source}: column names used twice: {', '.join(repeated)}")
    for rule in schema.rules:
        if rule.column not in schema.value_columns:
            raise UserError(f"{source}: rule on unknown column {rule.column!r}")
        if rule.column not in schema.numeric_columns:
            raise UserError(f"{source}: rule on {rule.column!r}: a min or max bounds numbers, not text")
    return schema


def _task(value: Any, source: str) -> Task:
    try:
        return Task(value)
    except ValueError:
        raise UserError(f"{source}: task must be regression, binary or multiclass, got {value!r}") from None


def _positive(raw: dict, source: str) -> str | None:
    value = raw.get("positive")
    if value is None:
        return None
    if raw.get("task") != Task.BINARY.value:
        raise UserError(f"{source}: 'positive' names a label of a binary task; this task is not binary")
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise UserError(f"{source}: 'positive' must be a label (text or an integer), got {value!r}")
    return str(value)


def _feature(raw: Any, source: str) -> Feature:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise UserError(f"{source}: each feature needs a name")
    try:
        kind = FeatureType(raw.get("type", "fractional"))
    except ValueError:
        raise UserError(
            f"{source}: feature {raw['name']!r} has type {raw.get('type')!r}; use integral, fractional "
            "or string"
        ) from None
    return Feature(raw["name"], kind)


def _rule(raw: Any, source: str) -> Rule:
    if not isinstance(raw, dict) or not isinstance(raw.get("column"), str):
        raise UserError(f"{source}: each rule needs a column")
    bounds = {}
    for key in ("min", "max"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int | float) or math.isnan(value)):
            raise UserError(f"{source}: rule on {raw['column']!r}: {key} must be a number")
        bounds[key] = value
    if bounds["min"] is None and bounds["max"] is None:
        raise UserError(f"{source}: rule on {raw['column']!r} needs a min or a max")
    policy = _policy(raw.get("policy", "quarantine"), f"{source}: rule on {raw['column']!r}")
    return Rule(column=raw["column"], min=bounds["min"], max=bounds["max"], policy=policy)


def _policy(value: Any, where: str) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        raise UserError(f"{where}: policy must be quarantine or fail, got {value!r}") from None


def load(path: Path) -> Schema:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"cannot read schema {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"schema {path} is not valid JSON: {exc}") from exc
    return parse(raw, source=f"schema {path}")


def housing() -> Schema:
    """The workflow's default: the housing table of the AWS sample."""
    text = resources.files("smray").joinpath("schemas/housing.json").read_text()
    return parse(json.loads(text), source="built-in housing schema")
