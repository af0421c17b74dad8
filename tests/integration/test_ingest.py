import json
import re
import shutil
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from smray import schema as schema_mod
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.feature_store.record_state import distinct
from smray.workstation import datagen

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "house_pricing.csv"
OFFLINE_FILE = re.compile(
    r"/000000000000/sagemaker/local/offline-store/housing-\d+/data/"
    r"year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/\d{8}T\d{6}Z_[A-Za-z0-9]{16}\.parquet$"
)


def options(tmp_path: Path, input_dir: Path, **kw) -> Namespace:
    opts = ingest.parser().parse_args([])
    opts.input = input_dir
    opts.store = str(tmp_path / "store")
    opts.quarantine = tmp_path / "quarantine"
    opts.report = tmp_path / "report.json"
    for k, v in kw.items():
        setattr(opts, k, v)
    return opts


def store_state(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "store")
    group = store.describe("housing")
    files = store.committed_files(group)
    offline = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return store, group, files, offline


def test_ingest_writes_sagemaker_offline_layout_and_online_store(ray_cluster, tmp_path, capsys):
    datagen.generate(tmp_path / "raw", rows=3000, files=3, fmt="parquet", seed=1)
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    store, group, files, offline = store_state(tmp_path)
    assert files and all(OFFLINE_FILE.search(str(f)) for f in files)
    assert all(f.exists() for f in files)
    assert {"write_time", "api_invocation_time", "is_deleted"} <= set(offline.columns)
    assert len(offline) == 3000 and not offline["is_deleted"].any()
    assert store.online_count(group) == 3000
    assert "ingest: 3000 rows from 3 file(s)" in capsys.readouterr().out

    # Again: idempotent. Nothing new offline, the online store unchanged.
    online_before = store.get_record(group, "17")
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    _, _, files_after, offline_after = store_state(tmp_path)
    assert len(offline_after) == 3000 and files_after == files
    assert store.get_record(group, "17") == online_before
    report = pd.read_json(tmp_path / "report.json", typ="series")
    assert report["written"] == 0 and report["already_present"] == 3000


def test_unchanged_records_stay_unchanged_when_the_schema_lists_the_features_in_another_order(
    ray_cluster, tmp_path
):
    """Ingest reuses its checks' digests of the values only when they were taken in the group's column
    order: the group keeps the order it was made with."""
    datagen.generate(tmp_path / "raw", rows=500, files=1, fmt="parquet", seed=3)
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    reordered = schema_mod.housing().to_dict()
    reordered["features"] = reordered["features"][::-1]
    (tmp_path / "schema.json").write_text(json.dumps(reordered))
    ingest.run(local(), options(tmp_path, tmp_path / "raw", schema=tmp_path / "schema.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["written"], report["already_present"]) == (0, 500)


def test_reference_table_gets_ids_and_times_and_its_negative_price_quarantined(ray_cluster, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(REFERENCE, raw)
    before = time.time()
    ingest.run(local(), options(tmp_path, raw))
    store, group, _, offline = store_state(tmp_path)
    assert len(offline) == 9999 and store.online_count(group) == 9999
    assert offline["record_id"].str.startswith("house_pricing.csv:").all()
    assert offline["event_time"].nunique() == 1  # no event-time column: the time of the ingest run
    assert before <= offline["event_time"].iloc[0] <= time.time()
    quarantined = pd.read_parquet(tmp_path / "quarantine")
    assert len(quarantined) == 1
    row = quarantined.iloc[0]
    assert row["PRICE"] == "-60901" and row["violated_rules"] == "PRICE >= 0"


def test_online_store_keeps_the_newest_record_and_supports_deletes(tmp_path):
    schema = schema_mod.housing()
    store = LocalFeatureStore(tmp_path / "store")
    group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema))
    base = datagen.housing_frame(2, seed=3)
    newer = base.assign(event_time=base["event_time"] + 100, PRICE=[1, 2])
    store.put(group, newer)
    older = base.assign(PRICE=[7, 8])
    result = store.put(group, older)
    assert result.written_offline == 2 and result.online_updated == 0  # older: offline only
    assert store.get_record(group, "0")["PRICE"] == 1
    store.put(group, newer.iloc[[0]], deleted=True)
    assert store.get_record(group, "0") is None and store.online_count(group) == 1


def test_existing_group_with_another_schema_is_a_clear_error(tmp_path):
    store = LocalFeatureStore(tmp_path / "store")
    store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    raw = schema_mod.housing().to_dict()
    raw["features"][0]["type"] = "fractional"
    with pytest.raises(UserError, match="YEAR_BUILT is Integral in the group but Fractional in the data"):
        store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.parse(raw)))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


HEADER = "PRICE,YEAR_BUILT,SQUARE_FEET,NUM_BEDROOMS,NUM_BATHROOMS,LOT_ACRES,GARAGE_SPACES,FRONT_PORCH,DECK\n"
GOOD = "490098,2008,3063.6,2,1.0,1.37,2,0,0\n"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"a.csv": HEADER.replace(",DECK", "") + "490098,2008,3063.6,2,1.0,1.37,2,0\n"},
            "missing column(s) DECK",
        ),
        (
            {"a.csv": HEADER + GOOD + "500000,2008,big,2,1.0,1.37,2,0,0\n"},
            "column SQUARE_FEET has a non-numeric value 'big' at row 3",
        ),
        ({"a.csv": ""}, "is empty"),
        ({"a.csv": HEADER}, "has a header but no rows"),
        (
            {"a.csv": HEADER + GOOD + "490098,2008.5,3063.6,2,1.0,1.37,2,0,0\n"},
            "integral column YEAR_BUILT has the fractional value 2008.5 at row 3",
        ),
        (
            {
                "a.csv": "record_id,event_time," + HEADER + "1,5," + GOOD,
                "b/a.csv": "record_id,event_time," + HEADER + "2,5," + GOOD + "1,5,490099" + GOOD[6:],
            },
            "record id 1 has different values at a.csv row 2 and at b/a.csv row 3 (1 such record id(s))",
        ),
        (
            {"a.csv": "record_id,event_time," + HEADER + "1,yesterday," + GOOD},
            "column event_time has 'yesterday'",
        ),
        ({"notes.txt": "nothing"}, "no CSV or Parquet files"),
    ],
)
def test_bad_input_is_one_clear_error_and_leaves_nothing(ray_cluster, tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / "raw" / name, text)
    with pytest.raises(UserError) as err:
        ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "store").exists() and not (tmp_path / "report.json").exists()


def test_fail_policy_stops_the_step(ray_cluster, tmp_path):
    raw = schema_mod.housing().to_dict()
    raw["rules"][0]["policy"] = "fail"
    schema_file = write(tmp_path / "schema.json", schema_mod.parse(raw).dumps())
    write(tmp_path / "raw" / "a.csv", HEADER + GOOD + "-5,2008,3063.6,2,1.0,1.37,2,0,0\n")
    with pytest.raises(
        UserError, match=r"1 row\(s\) break the rule PRICE >= 0 \(policy: fail\); first at row 3"
    ):
        ingest.run(local(), options(tmp_path, tmp_path / "raw", schema=schema_file))


def test_a_row_without_a_target_is_set_aside_and_counted_not_a_failed_step(ray_cluster, tmp_path):
    write(tmp_path / "raw" / "a.csv", HEADER + GOOD + ",2008,3063.6,2,1.0,1.37,2,0,0\n" + GOOD)
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    summary = json.loads((tmp_path / "report.json").read_text())
    assert (summary["rows_read"], summary["quarantined"], summary["written"]) == (3, 1, 2)
    quarantined = pd.read_parquet(tmp_path / "quarantine")
    assert quarantined[["source_row", "violated_rules"]].values.tolist() == [[3, "PRICE present"]]


def test_a_snapshot_whose_every_row_was_quarantined_deletes_nothing(ray_cluster, tmp_path):
    """A snapshot is the whole table: one whose every row broke a rule would delete every record. Refused,
    with the store as it was."""
    write(tmp_path / "raw" / "a.csv", HEADER + GOOD + GOOD.replace("490098", "490099"))
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    store, group, files, _ = store_state(tmp_path)
    write(tmp_path / "raw" / "a.csv", HEADER + "-5,2008,3063.6,2,1.0,1.37,2,0,0\n")
    with pytest.raises(
        UserError,
        match=r"every row of the input was quarantined \(1, kept in .*quarantine\): a snapshot of no rows",
    ):
        ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    assert store.committed_files(group) == files and store.online_count(group) == 2
    assert len(pd.read_parquet(tmp_path / "quarantine")) == 1  # the row that broke the rule, to look at


def test_an_integer_id_in_a_parquet_file_is_the_record_its_text_names_in_a_csv(ray_cluster, tmp_path):
    csv = write(tmp_path / "raw" / "a.csv", "record_id,event_time," + HEADER + "1,5," + GOOD)
    row = pd.read_csv(csv)  # record_id as an integer column
    row.assign(PRICE=490099).to_parquet(tmp_path / "raw" / "b.parquet")
    with pytest.raises(UserError, match=r"record id 1 has different values at a\.csv row 2 and at b\."):
        ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    row.to_parquet(tmp_path / "raw" / "b.parquet")  # the same row again: one record, written once
    ingest.run(local(), options(tmp_path, tmp_path / "raw"))
    summary = json.loads((tmp_path / "report.json").read_text())
    assert (summary["written"], summary["duplicates"], summary["deleted"]) == (1, 1, 0)
    # Across hosts' shares too: the number 7 and the text "7" are one id.
    assert not distinct(ingest.all_ids([np.array([7, 8]), ingest.id_keys(pd.Series(["7"]))]))
    assert distinct(ingest.all_ids([np.array([7, 8]), np.array([9])]))


def test_shares_are_disjoint_and_cover_everything(tmp_path):
    files = [write(tmp_path / f"f{i}.csv", "x" * (i + 1) * 100) for i in range(5)]
    listing = ingest.host_files(str(tmp_path))
    assert listing == [(f"f{i}.csv", (i + 1) * 100) for i in range(5)]
    shares = ingest.plan_hosts({"a": listing, "b": listing}, tmp_path)  # the same files on both hosts
    assert sorted(u.path for s in shares.values() for u in s) == sorted(map(str, files))
    assert all(shares.values())
    one = ingest.plan_hosts({h: listing[:1] for h in "abc"}, tmp_path)
    assert [(u.part, u.parts) for s in one.values() for u in s] == [(0, 3), (1, 3), (2, 3)]


def test_files_spread_over_the_hosts_are_each_read_where_they_are(tmp_path):
    """ShardedByS3Key: every object on one host, a host maybe with none; each host reads its own."""
    listings = {"a": [("f0.csv", 100), ("f2.csv", 300)], "b": [("f1.csv", 200)], "c": []}
    shares = ingest.plan_hosts(listings, tmp_path)
    assert {h: [u.path for u in s] for h, s in shares.items()} == {
        "a": [str(tmp_path / "f0.csv"), str(tmp_path / "f2.csv")],
        "b": [str(tmp_path / "f1.csv")],
        "c": [],
    }
    with pytest.raises(UserError, match=r"different input files, some on several hosts \(f1.csv\)"):
        ingest.plan_hosts({"a": [("f0.csv", 1), ("f1.csv", 1)], "b": [("f1.csv", 1)]}, tmp_path)


def _open_while_another_host_sets_up(tmp_path, monkeypatch, with_lock: bool):
    """Another host is half-way through creating the catalog (a write transaction in rollback-journal
    mode, under the store's lock file) when this host opens the store."""
    import contextlib
    import fcntl
    import sqlite3
    import threading

    from smray.feature_store import local as local_store

    store = LocalFeatureStore(tmp_path / "store")
    group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    Path(group.offline_uri).mkdir(parents=True)
    other = sqlite3.connect(Path(group.offline_uri) / "catalog.sqlite", isolation_level=None)
    lock = open(Path(group.offline_uri) / "catalog.lock", "a")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE setting_up (x)")
    if not with_lock:
        monkeypatch.setattr(local_store, "exclusive", lambda path: contextlib.nullcontext())
    outcome = {}

    def open_store():
        try:
            outcome["files"] = store.committed_files(group)
        except sqlite3.OperationalError as exc:
            outcome["error"] = str(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    opener.join(1.0)  # the other host takes a moment to finish its set-up
    other.execute("COMMIT")
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    opener.join(10)
    other.close()
    return outcome


def test_hosts_opening_a_new_store_at_once_take_turns(tmp_path, monkeypatch):
    """The race seen in a 2-host run: switching a new catalog to WAL while another host holds a write
    transaction fails at once with "database is locked" (SQLite's busy timeout does not apply to it).
    Without the store's lock file it happens; with it, the second host waits its turn."""
    assert _open_while_another_host_sets_up(tmp_path / "a", monkeypatch, with_lock=False) == {
        "error": "database is locked"
    }
    monkeypatch.undo()
    assert _open_while_another_host_sets_up(tmp_path / "b", monkeypatch, with_lock=True) == {"files": []}


def _write_share(root: str, first: int) -> int:
    store = LocalFeatureStore(Path(root))
    group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
    frame = datagen.housing_frame(200, seed=first, first_id=first)
    return store.put(group, frame).written_offline


def test_several_processes_create_and_write_one_new_store(tmp_path):
    """Several hosts (here processes) create and write one new store at about the same moment: nothing is
    lost."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        written = pool.starmap(_write_share, [(str(tmp_path / "store"), i * 1000) for i in range(4)])
    assert written == [200] * 4
    store = LocalFeatureStore(tmp_path / "store")
    assert store.online_count(store.describe("housing")) == 800
