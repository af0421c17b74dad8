"""The training mode's hyper-parameters, declared once as data: name, type, default, allowed range and,
for the tunable ones, the search range. Validation, defaults, the README table and the tuning search space
all come from this table.

SageMaker hands hyper-parameters over as strings in `/opt/ml/input/config/hyperparameters.json`.
`objective` and `eval_metric` are `auto` by default: the task's (`for_task`), from the preprocessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smray.contracts import train as contract
from smray.errors import UserError
from smray.schema import Task

AUTO = "auto"  # objective and eval_metric: the task's own (the first of each task's)
# The objectives each task may train with: those that answer what the model's users read (a number, the
# positive label's probability, each label's probability), the default first.
OBJECTIVES: dict[Task, tuple[str, ...]] = {
    Task.REGRESSION: ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"),
    Task.BINARY: ("binary:logistic",),
    Task.MULTICLASS: ("multi:softprob",),
}
# Keys SageMaker itself may add (HPO adds _tuning_objective_metric; framework estimators sagemaker_*).
RESERVED_PREFIXES = ("_", "sagemaker_")


@dataclass(frozen=True)
class Param:
    name: str
    kind: type
    default: Any
    doc: str
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    low_open: bool = False  # True: the bound itself is not allowed
    choices: tuple[str, ...] = ()
    tune: tuple[float, float] | None = None  # search range, when tunable
    log_scale: bool = False

    def parse(self, raw: Any) -> Any:
        text = str(raw).strip()
        try:
            if self.kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value: Any = text.lower() in ("true", "1")
            elif self.kind is int:
                as_float = float(text)
                if not as_float.is_integer():
                    raise ValueError
                value = int(as_float)
            else:
                value = self.kind(text)
        except ValueError:
            raise UserError(f"hyper-parameter {self.name}={raw!r}: expected {self.kind.__name__}") from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        if self.choices and value not in self.choices:
            raise UserError(
                f"hyper-parameter {self.name}={value!r}: expected one of {', '.join(self.choices)}"
            )
        if isinstance(value, float) and math.isnan(value):
            raise UserError(f"hyper-parameter {self.name} is NaN")
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and value > self.high
        if below or above:
            raise UserError(
                f"hyper-parameter {self.name}={value!r}: outside the allowed range {self.range_text()}"
            )

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        left = "(" if self.low_open else "["
        return f"{left}{_num(self.low)}, {_num(self.high)}]"


def _num(v: float | None) -> str:
    return "-inf" if v is None else f"{v:g}"


INF = math.inf
PARAMS: tuple[Param, ...] = (
    Param("num_round", int, 3000, "maximum boosting rounds", 1, 100_000),
    Param(
        "early_stopping_rounds",
        int,
        50,
        "stop after this many rounds without a better validation score (0: off)",
        0,
        10_000,
    ),
    Param("max_depth", int, 4, "maximum tree depth", 1, 30, tune=(2, 8)),
    Param("eta", float, 0.1, "learning rate", 0, 1, low_open=True, tune=(0.02, 0.3), log_scale=True),
    Param("min_child_weight", float, 1.0, "minimum sum of instance weight in a child", 0, INF, tune=(1, 10)),
    Param("subsample", float, 1.0, "row sampling per tree", 0, 1, low_open=True, tune=(0.6, 1.0)),
    Param("colsample_bytree", float, 1.0, "column sampling per tree", 0, 1, low_open=True, tune=(0.6, 1.0)),
    Param("gamma", float, 0.0, "minimum loss reduction to split", 0, INF),
    Param("lambda", float, 1.0, "L2 regularization", 0, INF, tune=(0.1, 10.0), log_scale=True),
    Param("alpha", float, 0.0, "L1 regularization", 0, INF),
    Param("tree_method", str, "hist", "XGBoost tree method", choices=("hist", "approx", "exact")),
    Param(
        "objective",
        str,
        AUTO,
        "objective; auto: the task's (reg:squarederror, binary:logistic, multi:softprob)",
        choices=(AUTO, *(o for task in Task for o in OBJECTIVES[task])),
    ),
    Param(
        "eval_metric",
        str,
        AUTO,
        "validation metric of early stopping and tuning; auto: the task's (rmse, auc, mlogloss)",
        choices=(AUTO, *(m for task in Task for m in contract.METRICS[task])),
    ),
    Param("seed", int, 42, "random seed", 0, 2**31 - 1),
    Param("target", str, "", "target column (default: the preprocessing artifact's)"),
    Param("checkpoint_every", int, 50, "save a checkpoint every this many rounds", 1, 100_000),
    Param(
        "engine",
        str,
        "auto",
        "auto: plain XGBoost on one host, XGBoost's collective across hosts on several",
        choices=("auto", "xgboost", "collective"),
    ),
    Param("tune", bool, False, "tune the tunable hyper-parameters first (trials on every core of the job)"),
    Param("tune_trials", int, 8, "number of tuning trials", 1, 1000),
    Param("tune_grace_rounds", int, 20, "rounds before the scheduler may stop a bad trial", 1, 100_000),
)
BY_NAME = {p.name: p for p in PARAMS}
XGBOOST_KEYS = (
    "max_depth",
    "eta",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "gamma",
    "lambda",
    "alpha",
    "tree_method",
    "objective",
    "eval_metric",
    "seed",
)


def resolve(given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the given values, each parsed and checked; unknown names are an error."""
    unknown = sorted(k for k in given if k not in BY_NAME and not k.startswith(RESERVED_PREFIXES))
    if unknown:
        raise UserError(
            f"unknown hyper-parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(BY_NAME))}"
        )
    values = {p.name: p.default for p in PARAMS}
    for key, raw in given.items():
        if key in BY_NAME:
            values[key] = BY_NAME[key].parse(raw)
    return values


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return resolve({})
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read hyper-parameters {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object of hyper-parameters")
    return resolve(raw)


def for_task(values: dict[str, Any], task: Task, classes: int = 0) -> dict[str, Any]:
    """The values with the task's objective and eval metric in place of `auto`, a given one checked
    against the task, and for a multiclass task `num_class`: the number of labels (the data's)."""
    out = dict(values)
    for name, allowed in (("objective", OBJECTIVES[task]), ("eval_metric", contract.METRICS[task])):
        if out[name] == AUTO:
            out[name] = allowed[0]
        elif out[name] not in allowed:
            raise UserError(
                f"hyper-parameter {name}={out[name]} does not fit a {task.value} task: "
                f"use {' or '.join(allowed)}"
            )
    if task is Task.MULTICLASS:
        out["num_class"] = classes
    return out


def xgboost_params(values: dict[str, Any], nthread: int | None = None) -> dict[str, Any]:
    """XGBoost's parameters from values resolved by `for_task`: the log carries every metric of the task
    (`eval_metric` is the one early stopping and tuning follow)."""
    params = {k: values[k] for k in XGBOOST_KEYS}
    params["eval_metric"] = list(contract.METRICS[contract.task_of(values["eval_metric"])])
    if "num_class" in values:
        params["num_class"] = values["num_class"]
    if nthread:
        params["nthread"] = nthread
    return params


def sample_trials(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` draws of the tunable hyper-parameters, each uniform over its search range (log-uniform where
    `log_scale`, integers inclusive), the same draws for the same seed."""
    rng = np.random.default_rng(seed)

    def draw(p: Param, low: float, high: float) -> Any:
        if p.kind is int:
            return int(rng.integers(int(low), int(high) + 1))
        if p.log_scale:
            return float(np.exp(rng.uniform(math.log(low), math.log(high))))
        return float(rng.uniform(low, high))

    return [{p.name: draw(p, *p.tune) for p in PARAMS if p.tune} for _ in range(count)]


def markdown_table() -> str:
    rows = ["| name | type | default | allowed | tuned over | meaning |", "|---|---|---|---|---|---|"]
    for p in PARAMS:
        tuned = f"{p.tune[0]:g} .. {p.tune[1]:g}" + (" (log)" if p.log_scale else "") if p.tune else ""
        allowed = p.range_text() if (p.choices or p.low is not None) else ""
        rows.append(f"| `{p.name}` | {p.kind.__name__} | `{p.default}` | {allowed} | {tuned} | {p.doc} |")
    return "\n".join(rows)
