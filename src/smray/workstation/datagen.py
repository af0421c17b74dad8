"""Synthetic tables, seeded, one per task: houses and their price (regression: the AWS sample's columns),
customers who churn or stay (binary: yes/no), customers and their segment (multiclass: four labels). The
classification tables have text features and a few empty cells, as real ones do, and a target the
features predict well but not perfectly.

Any row count, written as CSV or Parquet and split into several files, generated file by file so that
10 million rows never sit in memory at once. The houses follow the built-in housing schema; the other
tables come with their schema, written beside the files (`schema.json`) for `--schema`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smray import schema as schema_mod
from smray.errors import UserError
from smray.schema import Schema, housing

EPOCH_2025 = 1_735_689_600.0  # 2025-01-01T00:00:00Z: generated event times start here
# Event times span one day: the offline store partitions by event hour, so a year's spread would turn
# every ingested batch into thousands of tiny files (as it would on SageMaker).
EVENT_SPAN_S = 86_400.0
SCHEMA_FILE = "schema.json"
MISSING = 0.02  # of the cells of most features of the classification tables: empty


@dataclass(frozen=True)
class Generated:
    files: list[Path]
    rows: int
    schema: Path | None = None  # the table's schema file (None: the built-in housing schema)


def housing_frame(rows: int, seed: int, first_id: int = 0, with_ids: bool = True) -> pd.DataFrame:
    """`rows` houses; the price is a linear-ish function of the features plus Gaussian noise (sd 8,000)."""
    rng = np.random.default_rng(seed)
    year = rng.integers(1950, 2023, rows)
    sqft = np.clip(rng.normal(2500, 650, rows), 600, 6500)
    bedrooms = np.clip(np.round(sqft / 800 + rng.normal(0, 0.8, rows)), 1, 7).astype(int)
    bathrooms = np.clip(np.round((bedrooms * 0.7 + rng.normal(0, 0.5, rows)) * 2) / 2, 1, 5)
    lot = np.round(np.clip(rng.gamma(2.0, 0.35, rows), 0.05, 5.0), 2)
    garage = rng.integers(0, 4, rows)
    porch = rng.integers(0, 2, rows)
    deck = rng.integers(0, 2, rows)
    price = (
        60_000
        + 130 * sqft
        + 900 * (year - 1950)
        + 7_000 * bedrooms
        + 9_000 * bathrooms
        + 25_000 * np.sqrt(lot)
        + 6_000 * garage
        + 4_000 * porch
        + 5_000 * deck
        + rng.normal(0, 8_000, rows)
    )
    frame = pd.DataFrame(
        {
            "PRICE": np.round(price).astype(np.int64),
            "YEAR_BUILT": year,
            "SQUARE_FEET": sqft,
            "NUM_BEDROOMS": bedrooms,
            "NUM_BATHROOMS": bathrooms,
            "LOT_ACRES": lot,
            "GARAGE_SPACES": garage,
            "FRONT_PORCH": porch,
            "DECK": deck,
        }
    )
    if with_ids:
        _add_ids(frame, housing(), rng, first_id)
    return frame


STATES = ("CA", "FL", "GA", "IL", "MI", "NC", "NY", "OH", "TX", "WA")
STATE_EFFECT = (0.6, -0.4, 0.2, -0.8, 0.9, -0.2, 0.4, -0.6, 0.0, -1.0)  # on the log-odds of churning
PLANS = ("basic", "plus", "pro")
CHURN_SCHEMA = {
    "name": "churn",
    "target": "churned",
    "task": "binary",
    "positive": "yes",
    "features": [
        {"name": "state", "type": "string"},
        {"name": "plan", "type": "string"},
        {"name": "minutes", "type": "fractional"},
        {"name": "calls", "type": "integral"},
        {"name": "tenure", "type": "integral"},
    ],
    "rules": [{"column": "minutes", "min": 0, "policy": "quarantine"}],
}


def churn_frame(rows: int, seed: int, first_id: int = 0, with_ids: bool = True) -> pd.DataFrame:
    """`rows` customers of a phone company and whether they left ("yes"/"no"): more likely with more calls
    to support, more minutes, a short tenure, the basic plan, and in some states; a Bernoulli draw from
    that probability. About 2% of the state, plan, minutes and calls cells are empty."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, len(STATES), rows)
    plan = rng.choice(len(PLANS), rows, p=[0.5, 0.3, 0.2])
    minutes = np.round(rng.gamma(6.0, 30.0, rows), 1)
    calls = rng.poisson(1.5, rows)
    tenure = rng.integers(1, 73, rows)
    log_odds = (
        -4.8
        + 4.8 * (calls - 1.5)
        + 0.06 * (minutes - 180)
        - 0.21 * (tenure - 36)
        + np.array([3.6, 0.0, -4.8])[plan]
        + 4.5 * np.array(STATE_EFFECT)[state]
    )  # plain XGBoost: accuracy 0.92, AUC 0.98 on 800 test rows of 2,000 (0.93 and 0.98 of 20,000)
    churned = rng.random(rows) < 1 / (1 + np.exp(-log_odds))
    frame = pd.DataFrame(
        {
            "churned": np.where(churned, "yes", "no"),
            "state": np.array(STATES, dtype=object)[state],
            "plan": np.array(PLANS, dtype=object)[plan],
            "minutes": minutes,
            "calls": pd.array(calls, dtype="Int64"),
            "tenure": tenure,
        }
    )
    _blank(frame, ["state", "plan", "minutes", "calls"], rng)
    if with_ids:
        _add_ids(frame, schema_mod.parse(CHURN_SCHEMA), rng, first_id)
    return frame


SEGMENTS = ("budget", "business", "family", "premium")
REGIONS = ("central", "coastal", "east", "north", "south", "west")
CHANNELS = ("phone", "store", "web")
SEGMENT_SCHEMA = {
    "name": "segments",
    "target": "segment",
    "task": "multiclass",
    "features": [
        {"name": "region", "type": "string"},
        {"name": "channel", "type": "string"},
        {"name": "spend", "type": "fractional"},
        {"name": "visits", "type": "integral"},
        {"name": "age", "type": "integral"},
        {"name": "household", "type": "integral"},
    ],
}


def segment_frame(rows: int, seed: int, first_id: int = 0, with_ids: bool = True) -> pd.DataFrame:
    """`rows` customers of a retailer and their segment (budget, business, family, premium): the segment
    with the highest score, each a function of spend, visits, age, household size, region and channel,
    plus Gumbel noise. About 2% of the region, channel, spend and visits cells are empty."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, len(REGIONS), rows)
    channel = rng.integers(0, len(CHANNELS), rows)
    spend = np.round(rng.lognormal(5.0, 0.7, rows), 2)
    visits = rng.poisson(6, rows)
    age = rng.integers(18, 80, rows)
    household = rng.integers(1, 7, rows)
    log_spend = np.log(spend) - 5.0
    scores = np.column_stack(
        [
            -2.5 * log_spend - 0.1 * (visits - 6),  # budget
            1.5 * log_spend + 2.0 * (channel == 0) - 0.05 * (age - 45) + 0.6 * (region == 3),  # business
            1.4 * (household - 3) + 0.5 * log_spend + 0.8 * (channel == 1),  # family
            3.0 * log_spend + 0.04 * (age - 45) + 1.0 * (region == 1) - 0.6 * (household - 3),  # premium
        ]
    )
    # plain XGBoost: accuracy 0.77 on 6,000 test rows of 20,000 (0.25 by chance, 0.38 the commonest label)
    segment = np.argmax(scores + 0.8 * rng.gumbel(size=scores.shape), axis=1)
    frame = pd.DataFrame(
        {
            "segment": np.array(SEGMENTS, dtype=object)[segment],
            "region": np.array(REGIONS, dtype=object)[region],
            "channel": np.array(CHANNELS, dtype=object)[channel],
            "spend": spend,
            "visits": pd.array(visits, dtype="Int64"),
            "age": age,
            "household": household,
        }
    )
    _blank(frame, ["region", "channel", "spend", "visits"], rng)
    if with_ids:
        _add_ids(frame, schema_mod.parse(SEGMENT_SCHEMA), rng, first_id)
    return frame


def _blank(frame: pd.DataFrame, columns: list[str], rng: np.random.Generator) -> None:
    """Empty about MISSING of each column's cells, in place (drawn after the target: missing at random)."""
    for column in columns:
        frame.loc[rng.random(len(frame)) < MISSING, column] = None


def _add_ids(frame: pd.DataFrame, schema: Schema, rng: np.random.Generator, first_id: int) -> None:
    rows = len(frame)
    frame.insert(0, schema.record_id, np.arange(first_id, first_id + rows, dtype=np.int64))
    frame.insert(1, schema.event_time, EPOCH_2025 + rng.uniform(0, EVENT_SPAN_S, rows).round(3))


def as_numbers(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, Schema]:
    """The table with each text column (string features, labels) as numbers, a value's code in sorted
    order (a missing value stays missing), and its schema: a regression of numbers, otherwise the same.
    For benchmarks: text against numbers, everything else equal."""
    out = frame.copy()
    for column in schema.text_columns:
        codes, _ = pd.factorize(out[column], sort=True)
        out[column] = np.where(codes < 0, np.nan, codes)
    raw = schema.to_dict() | {"task": "regression"}
    raw.pop("positive", None)
    raw["features"] = [f | {"type": "fractional"} if f["type"] == "string" else f for f in raw["features"]]
    return out, schema_mod.parse(raw)


@dataclass(frozen=True)
class Table:
    prefix: str  # of the files' names
    frame: Callable[..., pd.DataFrame]  # (rows, seed, first_id, with_ids)
    schema: dict | None  # None: the built-in housing schema


TABLES = {
    "regression": Table("housing", housing_frame, None),
    "binary": Table("churn", churn_frame, CHURN_SCHEMA),
    "multiclass": Table("segments", segment_frame, SEGMENT_SCHEMA),
}
TASKS = tuple(TABLES)  # the schema's tasks, in its order


def generate(
    out_dir: Path,
    rows: int,
    files: int = 4,
    fmt: str = "csv",
    seed: int = 42,
    with_ids: bool = True,
    task: str = "regression",
) -> Generated:
    if not 1 <= files <= rows:
        raise UserError(f"files must be between 1 and the row count ({rows}), got {files}")
    if fmt not in ("csv", "parquet"):
        raise UserError(f"format must be csv or parquet, got {fmt!r}")
    if task not in TABLES:
        raise UserError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    table = TABLES[task]
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    first = 0
    for index in range(files):
        count = rows // files + (1 if index < rows % files else 0)
        frame = table.frame(count, seed=seed + index, first_id=first, with_ids=with_ids)
        path = out_dir / f"{table.prefix}-{index:04d}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
        first += count
    schema_file = None
    if table.schema is not None:
        schema_file = out_dir / SCHEMA_FILE
        schema_file.write_text(schema_mod.parse(table.schema).dumps())
    return Generated(files=written, rows=rows, schema=schema_file)
