"""The record state finds a batch's online rows the same way whether the batch lines up with a run of
them (a table ingested again as it was: one comparison) or not (a hash lookup); it tells a changed text
(a string feature, a label) from an unchanged one, as it does numbers."""

import numpy as np
import pandas as pd
import pytest

from smray.feature_store.record_state import DIGEST, RecordState, record_digests

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


def _text_batch(states: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": [str(i) for i in range(len(states))],
            "event_time": 1.0,
            "churned": pd.array(["yes"] * len(states), dtype="str"),
            "state": pd.array(states, dtype="str"),
        }
    )


def test_a_changed_text_is_a_changed_record():
    columns = ["churned", "state"]
    stored = RecordState.empty("record_id", "event_time").apply(
        _text_batch(["CA", "NY", None, "TX"]), columns, False, False, 1.0
    )
    again = stored.state.apply(_text_batch(["CA", "NV", "None", "TX"]), columns, False, True, 2.0)
    assert list(again.fresh["record_id"]) == ["1", "2"]  # NY -> NV; missing -> the text "None"
    same = stored.state.apply(_text_batch(["CA", "NY", None, "TX"]), columns, False, True, 2.0)
    assert same.fresh.empty


def test_text_digests_do_not_depend_on_how_pandas_holds_the_text_and_numbers_digest_as_before():
    as_read = pd.DataFrame({"state": pd.array(["CA", None], dtype="str"), "calls": [1, 2]})
    as_objects = pd.DataFrame({"state": pd.Series(["CA", None], dtype=object), "calls": [1.0, 2.0]})
    assert (
        record_digests(as_read, ["state", "calls"]) == record_digests(as_objects, ["state", "calls"])
    ).all()
    numbers = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]})
    before = pd.util.hash_pandas_object(numbers.astype("float64"), index=False).to_numpy().view("int64")
    assert (record_digests(numbers, ["a", "b"]) == before).all()  # the digests stores hold stay valid
