"""Synthetic housing data: the same columns as the AWS sample's table, a plausible price, seeded.

Any row count, written as CSV or Parquet and split into several files, generated file by file so that
10 million rows never sit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smray.errors import UserError
from smray.schema import housing

EPOCH_2025 = 1_735_689_600.0  # 2025-01-01T00:00:00Z: generated event times start here
# Event times span one day: the offline store partitions by event hour, so a year's spread would turn
# every ingested batch into thousands of tiny files (as it would on SageMaker).
EVENT_SPAN_S = 86_400.0


@dataclass(frozen=True)
class Generated:
    files: list[Path]
    rows: int


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
        schema = housing()
        frame.insert(0, schema.record_id, np.arange(first_id, first_id + rows, dtype=np.int64))
        frame.insert(1, schema.event_time, EPOCH_2025 + rng.uniform(0, EVENT_SPAN_S, rows).round(3))
    return frame


def generate(
    out_dir: Path, rows: int, files: int = 4, fmt: str = "csv", seed: int = 42, with_ids: bool = True
) -> Generated:
    if not 1 <= files <= rows:
        raise UserError(f"files must be between 1 and the row count ({rows}), got {files}")
    if fmt not in ("csv", "parquet"):
        raise UserError(f"format must be csv or parquet, got {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    first = 0
    for index in range(files):
        count = rows // files + (1 if index < rows % files else 0)
        frame = housing_frame(count, seed=seed + index, first_id=first, with_ids=with_ids)
        path = out_dir / f"housing-{index:04d}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
        first += count
    return Generated(files=written, rows=rows)
