"""Row-level data-quality rules from the schema: each rule either quarantines the rows that break it
(they go to a side output and are counted) or fails the step. Nothing is dropped silently.

Besides the schema's bounds there is one implicit rule, under the schema's `non_finite` policy: every
value is a finite number and every event time lies in the range a feature store can partition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from smray.errors import UserError
from smray.schema import Policy, Schema
from smray.tables import outside_event_time_range


@dataclass(frozen=True)
class Verdict:
    keep: pd.Series  # bool per row
    reasons: pd.Series  # per row: the rules it broke, "; "-joined ("" when kept)

    @property
    def quarantined(self) -> int:
        return int((~self.keep).sum())


def check(
    values: pd.DataFrame,
    schema: Schema,
    source: str,
    not_finite: pd.DataFrame,
    row_offset: int = 2,
) -> Verdict:
    """`values`: the value columns (and the event time, if the data has one); `not_finite`: per cell, a
    number that is not finite (tables.not_finite)."""
    reasons: pd.Series | None = None  # made at the first broken rule: most tables break none
    for column, rule, broken, policy in _broken(values, schema, not_finite):
        if not broken.any():
            continue
        if policy is Policy.FAIL:
            first = int(values.index[np.flatnonzero(broken)[0]])
            raise UserError(
                f"{source}: {int(broken.sum())} row(s) break the rule {rule} (policy: fail); "
                f"first at row {first + row_offset}: {column}={values[column][first]:g}"
            )
        if reasons is None:
            reasons = pd.Series("", index=values.index, dtype=object)
        reasons[broken] = reasons[broken].where(reasons[broken] == "", reasons[broken] + "; ") + rule
    if reasons is None:
        return Verdict(keep=pd.Series(True, index=values.index), reasons=pd.Series("", index=values.index))
    return Verdict(keep=reasons == "", reasons=reasons)


def _broken(
    values: pd.DataFrame, schema: Schema, not_finite: pd.DataFrame
) -> list[tuple[str, str, np.ndarray, Policy]]:
    """Per rule: its column, its description, the rows that break it, its policy."""
    found = [(c, f"{c} finite", not_finite[c].to_numpy(), schema.non_finite) for c in schema.value_columns]
    if schema.event_time in values.columns:
        found.append(
            (
                schema.event_time,
                f"{schema.event_time} in 1970 .. 2262",
                outside_event_time_range(values[schema.event_time]).to_numpy(),
                schema.non_finite,
            )
        )
    for rule in schema.rules:
        column = values[rule.column].to_numpy()
        broken = np.zeros(len(column), dtype=bool)
        if rule.min is not None:
            broken |= column < rule.min
        if rule.max is not None:
            broken |= column > rule.max
        found.append((rule.column, rule.describe(), broken, rule.policy))
    return found
