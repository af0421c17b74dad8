"""Row-level data-quality rules from the schema: each rule either quarantines the rows that break it
(they go to a side output and are counted) or fails the step. Nothing is dropped silently.

Besides the schema's bounds there are two implicit rules. "Finite", under the schema's `non_finite`
policy: every value of a numeric column is a finite number (or missing) and every event time lies in the
range a feature store can partition; text columns hold any text. "<target> present", under the schema's
`missing_target` policy: a row without a target can neither train nor score a model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from smray.errors import UserError
from smray.schema import Policy, Schema
from smray.tables import empty, outside_event_time_range


@dataclass(frozen=True)
class Verdict:
    keep: pd.Series  # bool per row
    reasons: pd.Series  # per row: the rules it broke, "; "-joined ("" when kept)

    @property
    def quarantined(self) -> int:
        return int((~self.keep).sum())


@dataclass(frozen=True)
class _Broken:
    column: str
    rule: str
    rows: np.ndarray  # bool per row: the rows that break the rule
    policy: Policy
    missing: bool = False  # the rule is about an empty cell: there is no value to show


def check(
    values: pd.DataFrame,
    schema: Schema,
    source: str,
    not_finite: pd.DataFrame,
    row_offset: int = 2,
) -> Verdict:
    """`values`: the value columns as `tables.values` reads them (and the event time, if the data has
    one); `not_finite`: per cell of the numeric columns, a number that is not finite (tables.not_finite)."""
    reasons: pd.Series | None = None  # made at the first broken rule: most tables break none
    for found in _broken(values, schema, not_finite):
        broken = found.rows
        if not broken.any():
            continue
        if found.policy is Policy.FAIL:
            first = int(values.index[np.flatnonzero(broken)[0]])
            shown = (
                f"{found.column} is empty"
                if found.missing
                else f"{found.column}={values[found.column][first]:g}"
            )
            raise UserError(
                f"{source}: {int(broken.sum())} row(s) break the rule {found.rule} (policy: fail); "
                f"first at row {first + row_offset}: {shown}"
            )
        if reasons is None:
            reasons = pd.Series("", index=values.index, dtype=object)
        reasons[broken] = reasons[broken].where(reasons[broken] == "", reasons[broken] + "; ") + found.rule
    if reasons is None:
        return Verdict(keep=pd.Series(True, index=values.index), reasons=pd.Series("", index=values.index))
    return Verdict(keep=reasons == "", reasons=reasons)


def _broken(values: pd.DataFrame, schema: Schema, not_finite: pd.DataFrame) -> list[_Broken]:
    """Every rule, with the rows that break it."""
    found = [
        _Broken(c, f"{c} finite", not_finite[c].to_numpy(), schema.non_finite) for c in schema.numeric_columns
    ]
    target = schema.target
    present = f"{target} present"
    found.append(
        _Broken(target, present, empty(values, not_finite, target), schema.missing_target, missing=True)
    )
    if schema.event_time in values.columns:
        found.append(
            _Broken(
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
        found.append(_Broken(rule.column, rule.describe(), broken, rule.policy))
    return found
