"""The record state finds a batch's online rows the same way whether the batch lines up with a run of
them (a table ingested again as it was: one comparison) or not (a hash lookup)."""

import pandas as pd
import pytest

from smray.feature_store.record_state import DIGEST, RecordState

VALUES = ["PRICE"]


def _batch(record_ids: list[int], changed: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": [str(i) for i in record_ids],
            "event_time": 1.0,
            "PRICE": [changed.get(i, 100.0 + i) for i in record_ids],
        }
    )


@pytest.mark.parametrize("order", [[3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [5, 3, 4], [9, 0, 4]])
def test_a_batch_finds_its_online_rows_whether_or_not_it_lines_up_with_them(order):
    stored = RecordState.empty("record_id", "event_time").apply(
        _batch(list(range(10)), {}), VALUES, False, False, 1.0
    )
    state = stored.state
    applied = state.apply(_batch(order, {4: 7.0}), VALUES, False, True, 2.0)
    assert list(applied.fresh["record_id"]) == ["4"]  # only the changed record is a new version
    online = applied.state.online
    assert sorted(online.index) == sorted(state.online.index)
    assert online.loc["4", DIGEST] != state.online.loc["4", DIGEST]
    assert online.drop(index="4").sort_index().equals(state.online.drop(index="4").sort_index())
