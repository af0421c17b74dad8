"""A table with text features, empty cells and text labels, through local ingest and preprocess: stored as
text, its rows without a target quarantined and counted, the categories and labels learned on the train
split only, an unseen category a missing value, a label only the test split has left out and counted."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smray import transform
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest, preprocess
from smray.entrypoints.training import data as channel_data
from smray.errors import UserError
from smray.feature_store.local import LocalFeatureStore
from tests.integration.test_ingest import options, write
from tests.integration.test_preprocess import options as preprocess_options

SCHEMA = {
    "name": "churn",
    "target": "churned",
    "task": "binary",
    "positive": "yes",
    "features": [
        {"name": "state", "type": "string"},
        {"name": "calls", "type": "integral"},
        {"name": "minutes", "type": "fractional"},
    ],
}
ROWS = 300


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ids = pd.Series([f"c{i}" for i in range(ROWS)])
    frame = pd.DataFrame(
        {
            "record_id": ids,
            "churned": rng.choice(["yes", "no"], ROWS),
            "state": rng.choice(["CA", "NY", "TX"], ROWS).astype(object),
            "calls": rng.integers(0, 9, ROWS).astype(object),
            "minutes": rng.uniform(0, 300, ROWS).round(1),
        }
    )
    frame["split"] = preprocess.split_of(ids, 42, [0.6, 0.2, 0.2]).to_numpy()
    return frame


def _first(frame: pd.DataFrame, split: str, k: int = 0) -> int:
    return int(frame.index[frame["split"] == split][k])


@pytest.fixture
def churn(tmp_path):
    """The table as CSV, with its oddities: which rows have which, by split."""
    frame = _table()
    odd = {
        "unseen_state": _first(frame, "test"),  # a category the train split never has
        "unseen_label": _first(frame, "test", 1),  # a label the train split never has
        "empty_state": _first(frame, "train"),
        "empty_calls": _first(frame, "validation"),
        "no_target": _first(frame, "train", 1),
    }
    frame.loc[odd["unseen_state"], "state"] = "ZZ"
    frame.loc[odd["unseen_label"], "churned"] = "maybe"
    frame.loc[odd["empty_state"], "state"] = None
    frame.loc[odd["empty_calls"], "calls"] = None
    frame.loc[odd["no_target"], "churned"] = None
    write(tmp_path / "raw" / "customers.csv", frame.drop(columns="split").to_csv(index=False))
    write(tmp_path / "churn.json", json.dumps(SCHEMA))
    return frame, odd


def _ingest(tmp_path, **kw):
    ingest.run(
        local(),
        options(tmp_path, tmp_path / "raw", schema=tmp_path / "churn.json", feature_group="churn", **kw),
    )
    return json.loads((tmp_path / "report.json").read_text())


def test_text_and_labels_go_through_ingest_and_preprocess_learned_on_train_only(
    ray_cluster, tmp_path, churn, capsys
):
    frame, odd = churn
    report = _ingest(tmp_path)
    assert (report["rows_read"], report["quarantined"], report["written"]) == (ROWS, 1, ROWS - 1)
    quarantined = pd.read_parquet(tmp_path / "quarantine")
    assert quarantined["violated_rules"].tolist() == ["churned present"]
    assert quarantined["record_id"].tolist() == [f"c{odd['no_target']}"]

    store = LocalFeatureStore(tmp_path / "store")
    group = store.describe("churn")
    offline = pq.read_schema(store.committed_files(group)[0])
    assert offline.field("state").type == pa.string() and offline.field("churned").type == pa.string()
    assert store.get_record(group, f"c{odd['empty_state']}")["state"] is None
    assert store.get_record(group, f"c{odd['unseen_state']}")["state"] == "ZZ"

    out = tmp_path / "out"
    opts = preprocess_options(tmp_path, out)
    opts.feature_group = "churn"
    preprocess.run(local(), opts)
    fitted = transform.load(out / "transform" / transform.FILE_NAME)
    assert fitted.categories == {"state": ("CA", "NY", "TX")} and fitted.labels == ("no", "yes")
    assert set(fitted.scale) == {"calls", "minutes"}  # the scaler: numbers only
    summary = json.loads((out / "report.json").read_text())
    assert summary["left_out"]["unseen_label"] == {"train": 0, "validation": 0, "test": 1}
    assert summary["categories"] == {"state": 3} and summary["labels"] == ["no", "yes"]
    assert "left out: 1 test row(s) with a label train never had" in capsys.readouterr().out

    splits = {name: pd.read_parquet(out / "splits" / name) for name in preprocess.SPLITS}
    expected = frame.drop(index=[odd["no_target"], odd["unseen_label"]])["split"].value_counts().to_dict()
    assert {n: len(s) for n, s in splits.items()} == expected == summary["splits"]
    for split in splits.values():
        assert (split.dtypes == "float64").all()
        assert split["churned"].isin([0.0, 1.0]).all() and split["state"].dropna().isin([0.0, 1.0, 2.0]).all()
    test, valid = splits["test"], splits["validation"]
    # Rows are matched by their minutes (unique): the unseen category is missing, as an empty cell is.
    minutes = fitted.apply_matrix(frame[["minutes"]].to_numpy(), ["minutes"])[:, 0]
    row = test[np.isclose(test["minutes"], minutes[odd["unseen_state"]])]
    assert len(row) == 1 and np.isnan(row["state"].iloc[0])
    row = valid[np.isclose(valid["minutes"], minutes[odd["empty_calls"]])]
    assert len(row) == 1 and np.isnan(row["calls"].iloc[0])
    assert not np.isclose(test["minutes"], minutes[odd["unseen_label"]]).any()

    channel = channel_data.load(
        out / "splits" / "validation", "churned", features=fitted.schema.feature_names
    )
    assert channel.feature_names == ["state", "calls", "minutes"]  # the order of fitted.feature_types
    assert channel.features["calls"].isna().sum() == 1 and channel.target.isin([0.0, 1.0]).all()


def test_a_changed_text_is_a_new_version_an_unchanged_table_writes_nothing_a_gone_one_is_deleted(
    ray_cluster, tmp_path, churn
):
    frame, odd = churn
    _ingest(tmp_path)
    assert _ingest(tmp_path)["written"] == 0
    frame.loc[odd["unseen_state"], "state"] = "NY"
    write(tmp_path / "raw" / "customers.csv", frame.drop(columns="split").to_csv(index=False))
    report = _ingest(tmp_path)
    assert (report["written"], report["already_present"]) == (1, ROWS - 2)
    store = LocalFeatureStore(tmp_path / "store")
    assert store.get_record(store.describe("churn"), f"c{odd['unseen_state']}")["state"] == "NY"
    gone = frame.drop(index=odd["unseen_state"]).drop(columns="split")  # a snapshot without the record
    write(tmp_path / "raw" / "customers.csv", gone.to_csv(index=False))
    assert _ingest(tmp_path)["deleted"] == 1
    assert store.get_record(store.describe("churn"), f"c{odd['unseen_state']}") is None


def test_a_label_is_its_text_whether_a_file_holds_it_as_a_number_or_as_text(ray_cluster, tmp_path):
    """1 in a CSV, 1.0 in a Parquet file's float column: one label, so one record, not a conflict."""
    schema = {**SCHEMA, "positive": "1"}
    write(tmp_path / "churn.json", json.dumps(schema))
    rows = pd.DataFrame(
        {"record_id": ["a", "b"], "churned": [1.0, 0.0], "state": ["CA", "NY"], "calls": [1, 2]}
    )
    rows = rows.assign(minutes=[1.5, 2.5], event_time=7.0)
    write(tmp_path / "raw" / "a.csv", rows.astype({"churned": int}).to_csv(index=False))
    rows.to_parquet(tmp_path / "raw" / "b.parquet")
    report = _ingest(tmp_path)
    assert (report["written"], report["duplicates"]) == (2, 2)
    store = LocalFeatureStore(tmp_path / "store")
    assert store.get_record(store.describe("churn"), "a")["churned"] == "1"


def test_a_row_without_a_target_fails_the_step_under_the_fail_policy(ray_cluster, tmp_path, churn):
    _, odd = churn
    write(tmp_path / "churn.json", json.dumps({**SCHEMA, "missing_target": "fail"}))
    with pytest.raises(UserError) as err:
        _ingest(tmp_path)
    assert str(err.value).endswith(
        f"customers.csv: 1 row(s) break the rule churned present (policy: fail); "
        f"first at row {odd['no_target'] + 2}: churned is empty"
    )
    assert not (tmp_path / "store").exists()
