"""Row-level data-quality rules from the schema: each rule either quarantines the rows that break it
(they go to a side output and are counted) or fails the step. Nothing is dropped silently.

Besides the schema's bounds there is one implicit rule, under the schema's `non_finite` policy: every
value is a finite number and every event time lies in the range a feature store can partition."""

from __future__ import annotations

from dataclasses import dataclass

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
    reasons = pd.Series("", index=values.index, dtype=object)
    for column, rule, broken, policy in _broken(values, schema, not_finite):
        if not broken.any():
            continue
        if policy is Policy.FAIL:
            first = int(broken.index[broken.to_numpy()][0])
            raise UserError(
                f"{source}: {int(broken.sum())} row(s) break the rule {rule} (policy: fail); "
                f"first at row {first + row_offset}: {column}={values[column][first]:g}"
            )
        reasons[broken] = reasons[broken].where(reasons[broken] == "", reasons[broken] + "; ") + rule
    return Verdict(keep=reasons == "", reasons=reasons)


def _broken(
    values: pd.DataFrame, schema: Schema, not_finite: pd.DataFrame
) -> list[tuple[str, str, pd.Series, Policy]]:
    found = [(c, f"{c} finite", not_finite[c], schema.non_finite) for c in schema.value_columns]
    if schema.event_time in values.columns:
        found.append(
            (
                schema.event_time,
                f"{schema.event_time} in 1970 .. 2262",
                outside_event_time_range(values[schema.event_time]),
                schema.non_finite,
            )
        )
    for rule in schema.rules:
        column = values[rule.column]
        broken = pd.Series(False, index=values.index)
        if rule.min is not None:
            broken |= column < rule.min
        if rule.max is not None:
            broken |= column > rule.max
        found.append((rule.column, rule.describe(), broken, rule.policy))
    return found
