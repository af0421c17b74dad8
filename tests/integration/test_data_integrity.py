"""What a user's own data goes through: edited files ingested again, partitioned folders, numbers that
are not finite. After any sequence of ingests, the store's latest content and what preprocess sees equal
the latest input, row by row."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from smray import schema as schema_mod
from smray import transform
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest, preprocess
from smray.entrypoints.training import data as channel_data
from smray.errors import UserError
from smray.feature_store.local import LocalFeatureStore
from smray.feature_store.record_state import latest_versions
from smray.workstation import datagen
from smray.workstation.local_workflow import stage_input
from tests.integration.test_ingest import GOOD, HEADER, options, write
from tests.integration.test_preprocess import options as preprocess_options

FEATURES = list(datagen.housing_frame(1, 0, with_ids=False).columns[1:])


def latest_in_store(tmp_path: Path) -> pd.DataFrame:
    """Each record's latest live content, read from the committed offline files."""
    store = LocalFeatureStore(tmp_path / "store")
    group = store.describe("housing")
    history = pd.concat([pq.read_table(f).to_pandas() for f in store.committed_files(group)])
    return latest_versions(history, "record_id", "event_time").set_index("record_id").sort_index()


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def test_an_edited_file_ingested_again_is_what_the_store_serves(ray_cluster, tmp_path):
    """The day-1 / day-2 case: no id and no event-time column; a row inserted at the top shifts ids."""
    rows = GOOD.split(",", 1)[1]
    write(tmp_path / "raw" / "houses.csv", HEADER + f"100000,{rows}200000,{rows}")
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    day1 = latest_in_store(tmp_path)
    write(tmp_path / "raw" / "houses.csv", HEADER + f"555555,{rows}111111,{rows}200000,{rows}")
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    latest = latest_in_store(tmp_path)
    assert latest["PRICE"].to_dict() == {
        "houses.csv:0": 555555,
        "houses.csv:1": 111111,
        "houses.csv:2": 200000,
    }
    assert (latest["event_time"] > day1["event_time"].max()).all()  # every record changed: a new version
    store = LocalFeatureStore(tmp_path / "store")
    assert store.get_record(store.describe("housing"), "houses.csv:0")["PRICE"] == 555555
    assert report(tmp_path)["written"] == 3

    ingest.run(local(), options(tmp_path, tmp_path / "raw"))  # the same file again: nothing to write
    assert report(tmp_path)["written"] == 0 and report(tmp_path)["already_present"] == 3
    pd.testing.assert_frame_equal(latest_in_store(tmp_path), latest)  # unchanged records keep their time


def _preprocessed(tmp_path: Path, out: Path) -> pd.DataFrame:
    """Every row preprocess wrote, the features scaled back to raw values with its own scaler."""
    preprocess.run(local(), preprocess_options(tmp_path, out))
    rows = pd.concat([pd.read_parquet(out / "splits" / n) for n in preprocess.SPLITS], ignore_index=True)
    fitted = transform.load(out / "transform" / transform.FILE_NAME)
    rows[FEATURES] = fitted.invert_matrix(rows[FEATURES].to_numpy("float64"), FEATURES)
    return rows


def _same_rows(seen: pd.DataFrame, expected: pd.DataFrame) -> None:
    columns = ["PRICE", *FEATURES]
    a = seen[columns].round(6).sort_values(columns, ignore_index=True)
    b = expected[columns].astype("float64").round(6).sort_values(columns, ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_three_ingests_with_edits_inserts_and_deletes_leave_exactly_the_latest_input(ray_cluster, tmp_path):
    raw = tmp_path / "raw" / "table.csv"
    day1 = datagen.housing_frame(60, seed=11).drop(columns=["event_time"])
    write(raw, day1.to_csv(index=False))
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))

    day2 = day1.copy()
    day2.loc[day2.index[:5], "PRICE"] += 1000.0  # edits
    day2 = pd.concat([day2.drop(day2.index[10:14]), datagen.housing_frame(6, seed=12, first_id=1000)])
    write(raw, day2.drop(columns=["event_time"], errors="ignore").to_csv(index=False))  # + inserts, deletes
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    assert (report(tmp_path)["written"], report(tmp_path)["deleted"]) == (11, 4)

    day3 = day2.drop(day2.index[20:30]).copy()
    day3.loc[day3.index[-3:], "SQUARE_FEET"] *= 2
    write(raw, day3.drop(columns=["event_time"], errors="ignore").to_csv(index=False))
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))

    latest = latest_in_store(tmp_path)
    expected = day3.assign(record_id=day3["record_id"].astype(str)).set_index("record_id").sort_index()
    assert list(latest.index) == list(expected.index)  # exactly the latest input's records
    pd.testing.assert_frame_equal(
        latest[["PRICE", *FEATURES]].astype("float64"), expected[["PRICE", *FEATURES]].astype("float64")
    )
    _same_rows(_preprocessed(tmp_path, tmp_path / "pre"), day3)


def test_a_table_ingested_again_after_another_replaced_it_is_live_again(ray_cluster, tmp_path):
    """Snapshot A, then B (A's records deleted as of that run), then A again: A's rows carry their own,
    older event times, and still A is the table."""
    raw = tmp_path / "raw" / "table.csv"
    first, other = datagen.housing_frame(30, seed=21), datagen.housing_frame(20, seed=22, first_id=500)
    for table in (first, other, first):
        write(raw, table.to_csv(index=False))
        ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    assert (report(tmp_path)["written"], report(tmp_path)["deleted"]) == (30, 20)
    latest = latest_in_store(tmp_path)
    assert sorted(latest.index) == sorted(first["record_id"].astype(str))
    _same_rows(_preprocessed(tmp_path, tmp_path / "pre"), first)
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))  # and once more: nothing changed
    assert (report(tmp_path)["written"], report(tmp_path)["already_present"]) == (0, 30)


def test_a_partitioned_folder_with_repeated_file_names_loses_nothing(ray_cluster, tmp_path):
    source = tmp_path / "source"
    for year, seed in (("2024", 1), ("2025", 2)):
        frame = datagen.housing_frame(40, seed=seed, with_ids=False)
        write(source / f"year={year}" / "part-0.csv", frame.to_csv(index=False))
    staged = stage_input(tmp_path / "home", source)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*.csv")) == [
        "year=2024/part-0.csv",
        "year=2025/part-0.csv",
    ]
    ingest.run(local(), options(tmp_path, staged))
    latest = latest_in_store(tmp_path)
    assert len(latest) == 80
    assert latest.index.str.startswith("year=2024/part-0.csv:").sum() == 40
    assert stage_input(tmp_path / "home", source) == staged  # the same input is staged once


BAD_NUMBERS = [
    ("PRICE", "inf"),
    ("PRICE", "nan"),
    ("SQUARE_FEET", "1e400"),
    ("SQUARE_FEET", "-inf"),
    ("LOT_ACRES", "1" + "0" * 400),
    ("event_time", "inf"),
    ("event_time", "1e20"),
    ("event_time", "NaN"),
]


def _table_with(column: str, value: str) -> str:
    frame = datagen.housing_frame(30, seed=4)
    frame["event_time"] = frame["event_time"].astype(str)
    frame[column] = frame[column].astype(str)
    frame.loc[7, column] = value
    return frame.to_csv(index=False)


def _fail_policy_schema(tmp_path: Path) -> Path:
    raw = schema_mod.housing().to_dict() | {"non_finite": "fail"}
    return write(tmp_path / "schema.json", schema_mod.parse(raw).dumps())


@pytest.mark.parametrize(("column", "value"), BAD_NUMBERS)
def test_a_number_that_is_not_finite_is_quarantined_and_never_stored(ray_cluster, tmp_path, column, value):
    write(tmp_path / "raw" / "a.csv", _table_with(column, value))
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    quarantined = pd.read_parquet(tmp_path / "quarantine")
    assert list(quarantined["source_row"]) == [9] and quarantined[column].iloc[0] == value
    rule = f"{column} in 1970 .. 2262" if column == "event_time" else f"{column} finite"
    assert rule in quarantined["violated_rules"].iloc[0]
    latest = latest_in_store(tmp_path)
    assert len(latest) == 29 and np.isfinite(latest[["PRICE", "event_time"]].to_numpy()).all()
    assert not np.isinf(latest[FEATURES].to_numpy()).any()


@pytest.mark.parametrize(("column", "value"), BAD_NUMBERS)
def test_a_number_that_is_not_finite_fails_the_step_under_the_fail_policy(
    ray_cluster, tmp_path, column, value
):
    schema_file = _fail_policy_schema(tmp_path)
    write(tmp_path / "raw" / "a.csv", _table_with(column, value))
    with pytest.raises(UserError) as err:
        ingest.run(local(), options(tmp_path, tmp_path / "raw", schema=schema_file))
    assert "(policy: fail); first at row 9" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "store").exists()  # checked before anything was written


def test_an_event_time_out_of_range_is_caught_before_the_first_batch_is_written(ray_cluster, tmp_path):
    frame = datagen.housing_frame(30, seed=4)
    frame.loc[25, "event_time"] = 1e20  # in the last batch of five
    write(tmp_path / "raw" / "a.csv", frame.to_csv(index=False))
    schema_file = _fail_policy_schema(tmp_path)
    with pytest.raises(UserError, match=r"event_time in 1970 \.\. 2262"):
        ingest.run(local(), options(tmp_path, tmp_path / "raw", schema=schema_file, batch_rows=5))
    assert not (tmp_path / "store").exists()


def test_the_scaler_and_the_training_channels_refuse_what_is_not_finite(tmp_path):
    huge = pd.DataFrame({"a": [1e308, 1e308, -1e308, 5.0]})
    with pytest.raises(UserError, match="cannot standardize a: its values overflow float64"):
        preprocess.merge_moments(preprocess.moments(huge, ["a"]), ["a"])
    fitted = transform.Transform(schema_mod.housing(), {"SQUARE_FEET": transform.Scale(float("inf"), 1.0)})
    with pytest.raises(UserError, match="the scaler of SQUARE_FEET is not finite"):
        fitted.save(tmp_path / "t")
    assert not (tmp_path / "t" / transform.FILE_NAME).exists()
    write(tmp_path / "train" / "a.csv", "PRICE,x\n1,2\n3,inf\n")
    with pytest.raises(UserError, match="column x has the value 'inf', which is not a finite number"):
        channel_data.load(tmp_path / "train", "PRICE")


def test_the_default_event_time_is_the_run_s_time_and_unchanged_records_keep_theirs(ray_cluster, tmp_path):
    frame = datagen.housing_frame(10, seed=3).drop(columns=["event_time"])
    write(tmp_path / "raw" / "a.csv", frame.to_csv(index=False))
    before = time.time()
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    first = latest_in_store(tmp_path)
    assert ((first["event_time"] >= before) & (first["event_time"] <= time.time())).all()
    frame.loc[3, "PRICE"] += 1
    write(tmp_path / "raw" / "a.csv", frame.to_csv(index=False))
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    second = latest_in_store(tmp_path)
    changed = second["event_time"] != first["event_time"]
    assert list(second.index[changed]) == ["3"] and second.loc["3", "PRICE"] == frame.loc[3, "PRICE"]


_EARLIER_CATALOGS = {
    "keys only": "CREATE TABLE offline_keys (record_id TEXT, event_time REAL, deleted INTEGER); "
    "CREATE TABLE online (record_id TEXT PRIMARY KEY, event_time REAL);",
    "state in SQLite": "CREATE TABLE record_versions (record_id TEXT, event_time REAL, digest INTEGER, "
    "deleted INTEGER, PRIMARY KEY (record_id, event_time, digest, deleted)) WITHOUT ROWID; "
    "CREATE TABLE online_records (record_id TEXT PRIMARY KEY, event_time REAL, digest INTEGER, record TEXT);",
}


@pytest.mark.parametrize("earlier", sorted(_EARLIER_CATALOGS))
def test_a_store_of_an_earlier_smray_is_upgraded_and_its_records_stay_unchanged(tmp_path, earlier):
    import shutil
    import sqlite3

    from smray.feature_store.definition import FeatureGroupDefinition

    store = LocalFeatureStore(tmp_path / "store")
    group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    frame = datagen.housing_frame(20, seed=8)
    store.put(group, frame)
    store.put(group, frame.iloc[[4]].assign(event_time=frame["event_time"].max() + 1), deleted=True)
    shutil.rmtree(Path(group.offline_uri) / "catalog")  # the record state as an earlier smray kept it
    catalog = sqlite3.connect(Path(group.offline_uri) / "catalog.sqlite")
    catalog.executescript("DROP TABLE state_files; " + _EARLIER_CATALOGS[earlier])
    catalog.close()
    store = LocalFeatureStore(tmp_path / "store")
    assert store.online_count(group) == 19  # rebuilt from the offline files, the delete included
    assert store.get_record(group, "7")["PRICE"] == frame.loc[7, "PRICE"]
    again = store.put(group, frame.drop(index=4))
    assert (again.written_offline, again.already_present) == (0, 19)


def test_a_reader_never_lists_a_file_whose_batch_is_still_moving_into_place(tmp_path, monkeypatch):
    from smray.feature_store.definition import FeatureGroupDefinition

    store = LocalFeatureStore(tmp_path / "store")
    group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    store.put(group, datagen.housing_frame(5, seed=1))
    landed = store.committed_files(group)
    # The writer has committed its next batch but not yet moved its files (it is paused right there).
    monkeypatch.setattr(LocalFeatureStore, "_recover", lambda self, conn, group: None)
    store.put(group, datagen.housing_frame(5, seed=2, first_id=100))
    listed = store.committed_files(group)
    assert listed == landed and all(f.exists() for f in listed)
    monkeypatch.undo()  # the next open finishes the move: then the batch is listed
    assert len(store.committed_files(group)) > len(landed)


def _online_and_offline_price(store: LocalFeatureStore, record: str) -> tuple[float, float]:
    """The record's price online, and the one preprocess picks from the offline store."""
    group = store.describe("housing")
    latest = latest_in_store(store.root.parent)
    return store.get_record(group, record)["PRICE"], latest.loc[record, "PRICE"]


def _housing_store(tmp_path: Path) -> LocalFeatureStore:
    from smray.feature_store.definition import FeatureGroupDefinition

    store = LocalFeatureStore(tmp_path / "store")
    store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    return store


def test_two_writers_of_a_record_at_one_event_time_leave_the_last_commit_online_and_offline(
    tmp_path, monkeypatch
):
    """Writer A is on its way to the lock when B commits the same record and event time; then A commits."""
    store = _housing_store(tmp_path)
    group, row = store.describe("housing"), datagen.housing_frame(1, seed=3)
    a_waits, b_committed, failures = threading.Event(), threading.Event(), []
    catalog = LocalFeatureStore._catalog

    def a_pauses_before_the_lock(self, group, *args, **kw):
        if threading.current_thread().name == "A" and not b_committed.is_set():
            a_waits.set()
            b_committed.wait(60)  # B failing must not hang the run
        return catalog(self, group, *args, **kw)

    def writer_a():
        try:
            store.put(group, row.assign(PRICE=1.0))
        except BaseException as exc:
            failures.append(exc)

    monkeypatch.setattr(LocalFeatureStore, "_catalog", a_pauses_before_the_lock)
    a = threading.Thread(target=writer_a, name="A", daemon=True)
    a.start()
    assert a_waits.wait(30)
    store.put(group, row.assign(PRICE=2.0))
    b_committed.set()
    a.join(30)
    assert not failures and not a.is_alive()
    assert _online_and_offline_price(store, "0") == (1.0, 1.0)


def test_a_writer_whose_clock_runs_behind_still_writes_after_the_last_commit(tmp_path, monkeypatch):
    """Hosts share the store folder, not their clocks: the newest commit wins on both sides."""
    from datetime import datetime, timedelta

    from smray.feature_store import local as local_store

    store = _housing_store(tmp_path)
    group, row = store.describe("housing"), datagen.housing_frame(1, seed=3)
    store.put(group, row.assign(PRICE=1.0))

    class HourBehind(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - timedelta(hours=1)

    monkeypatch.setattr(local_store, "datetime", HourBehind)
    store.put(group, row.assign(PRICE=2.0))
    assert _online_and_offline_price(store, "0") == (2.0, 2.0)
