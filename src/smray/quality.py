"""Row-level data-quality rules from the schema: each rule either quarantines the rows that break it
(they go to a side output and are counted) or fails the step. Nothing is dropped silently."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from smray.errors import UserError
from smray.schema import Policy, Schema


@dataclass(frozen=True)
class Verdict:
    keep: pd.Series  # bool per row
    reasons: pd.Series  # per row: the rules it broke, "; "-joined ("" when kept)

    @property
    def quarantined(self) -> int:
        return int((~self.keep).sum())


def check(values: pd.DataFrame, schema: Schema, source: str, row_offset: int = 2) -> Verdict:
    reasons = pd.Series("", index=values.index, dtype=object)
    for rule in schema.rules:
        column = values[rule.column]
        broken = pd.Series(False, index=values.index)
        if rule.min is not None:
            broken |= column < rule.min
        if rule.max is not None:
            broken |= column > rule.max
        if not broken.any():
            continue
        if rule.policy is Policy.FAIL:
            first = int(broken.index[broken.to_numpy()][0])
            raise UserError(
                f"{source}: {int(broken.sum())} row(s) break the rule {rule.describe()} (policy: fail); "
                f"first at row {first + row_offset}: {rule.column}={column[first]:g}"
            )
        reasons[broken] = (
            reasons[broken].where(reasons[broken] == "", reasons[broken] + "; ") + rule.describe()
        )
    return Verdict(keep=reasons == "", reasons=reasons)
