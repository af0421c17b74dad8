"""The local store's record state in Parquet files: compacted when batches pile up, never stale when
another process commits, untouched by a batch that fails."""

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from smray import schema as schema_mod
from smray.errors import PlatformError
from smray.feature_store import local as local_store
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.workstation import cli, datagen


def _store(root: Path) -> tuple[LocalFeatureStore, FeatureGroupDefinition]:
    store = LocalFeatureStore(root)
    return store, store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))


def _state_files(group: FeatureGroupDefinition) -> set[str]:
    return {p.name for p in (Path(group.offline_uri) / "catalog").glob("*.parquet")}


def _active_state_files(group: FeatureGroupDefinition) -> int:
    with sqlite3.connect(Path(group.offline_uri) / "catalog.sqlite") as catalog:
        return catalog.execute("SELECT COUNT(*) FROM state_files WHERE retired_at IS NULL").fetchone()[0]


def test_batches_that_pile_up_are_compacted_and_the_store_reads_the_same_records(tmp_path, monkeypatch):
    store, group = _store(tmp_path / "store")
    for batch in range(30):
        store.put(group, datagen.housing_frame(10, seed=batch, first_id=10 * batch))
    edited = datagen.housing_frame(10, seed=0).iloc[[3]]
    store.put(group, edited.assign(PRICE=1, event_time=edited["event_time"] + 1))
    store.put(group, edited.assign(event_time=edited["event_time"] + 2), deleted=True)
    written, active = len(_state_files(group)), _active_state_files(group)
    assert written > 2 * local_store._MAX_STATE_FILES >= 2 * active, (written, active)

    local_store._last_state.clear()  # read from the files, as a new process would
    assert store.online_count(group) == 299 and store.get_record(group, "3") is None
    assert store.get_record(group, "4")["PRICE"] == datagen.housing_frame(10, seed=0).loc[4, "PRICE"]
    again = store.put(group, datagen.housing_frame(10, seed=29, first_id=290))
    assert (again.written_offline, again.already_present) == (0, 10)

    monkeypatch.setattr(local_store, "_RETIRED_KEPT_S", -1.0)  # readers of compacted files are gone
    store.online_count(group)
    assert len(_state_files(group)) == _active_state_files(group)


def _edit_record(root: str, record: int, price: int) -> None:
    store, group = _store(Path(root))
    row = datagen.housing_frame(20, seed=5).iloc[[record]]
    store.put(group, row.assign(PRICE=price, event_time=row["event_time"] + 60))


def test_a_commit_by_another_process_is_seen_by_a_store_that_read_the_state_before(tmp_path):
    store, group = _store(tmp_path / "store")
    store.put(group, datagen.housing_frame(20, seed=5))
    assert store.get_record(group, "3")["PRICE"] == datagen.housing_frame(20, seed=5).loc[3, "PRICE"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_edit_record, (str(tmp_path / "store"), 3, 123))
    assert store.get_record(group, "3")["PRICE"] == 123
    # The original rows again: record 3's row is an older version the store holds, not new.
    again = store.put(group, datagen.housing_frame(20, seed=5))
    assert (again.written_offline, store.get_record(group, "3")["PRICE"]) == (0, 123)


def test_a_batch_that_fails_leaves_no_files_and_the_state_as_it_was(tmp_path, monkeypatch):
    store, group = _store(tmp_path / "store")
    store.put(group, datagen.housing_frame(20, seed=6))
    before, offline = _state_files(group), store.committed_files(group)
    write = local_store.pq.write_table

    def disk_full_at_the_state_file(table, where, **kw):  # the batch's offline files are written beside
        if Path(where).parent.name == "catalog":
            Path(where).write_bytes(b"PAR1")
            raise OSError("disk full")
        write(table, where, **kw)

    monkeypatch.setattr(local_store.pq, "write_table", disk_full_at_the_state_file)
    with pytest.raises(OSError, match="disk full"):
        store.put(group, datagen.housing_frame(20, seed=7, first_id=100))
    monkeypatch.undo()
    assert _state_files(group) == before and store.committed_files(group) == offline
    assert not list((Path(group.offline_uri) / "staging").rglob("*.parquet"))
    assert store.online_count(group) == 20
    assert store.put(group, datagen.housing_frame(20, seed=7, first_id=100)).written_offline == 20


def test_files_a_dead_batch_left_are_removed_after_an_hour_and_committed_ones_kept(tmp_path):
    store, group = _store(tmp_path / "store")
    store.put(group, datagen.housing_frame(20, seed=8))
    committed, state = store.committed_files(group), _state_files(group)
    root = Path(group.offline_uri)
    (root / "staging" / "dead").mkdir(parents=True)
    leftovers = {
        "old staged": root / "staging" / "dead" / "old.parquet",
        "new staged": root / "staging" / "dead" / "new.parquet",
        "old state": root / "catalog" / "versions-old.parquet",
        "new state": root / "catalog" / "versions-new.parquet",
    }
    for name, path in leftovers.items():
        path.write_bytes(b"PAR1")
        if name.startswith("old"):  # written two hours ago
            os.utime(path, (time.time() - 7200, time.time() - 7200))
    two_hours_ago = time.time() - 7200
    for path in committed:
        os.utime(path, (two_hours_ago, two_hours_ago))
    for name in state:
        os.utime(root / "catalog" / name, (two_hours_ago, two_hours_ago))

    assert store.committed_files(group) == committed  # opening the store cleans up
    assert {n for n, p in leftovers.items() if p.exists()} == {"new staged", "new state"}
    assert all(p.exists() for p in committed) and state <= _state_files(group)
    assert store.online_count(group) == 20


def _put_killed_between_commit_and_move(root: str) -> None:
    store, group = _store(Path(root))
    recover = LocalFeatureStore._recover

    def killed_at_the_move(self, conn, group):
        if conn.execute("SELECT COUNT(*) FROM files WHERE staged IS NOT NULL").fetchone()[0]:
            os._exit(9)  # the batch is committed, its files still staged
        recover(self, conn, group)

    LocalFeatureStore._recover = killed_at_the_move
    store.put(group, datagen.housing_frame(20, seed=9))


def _killed_job_store(tmp_path: Path) -> Path:
    """A store whose job was killed between a batch's commit and its move, now at another path (a job
    container mounts the folder at /opt/ml/processing/...; the host, somewhere else)."""
    job = multiprocessing.get_context("spawn").Process(
        target=_put_killed_between_commit_and_move, args=(str(tmp_path / "job" / "store"),)
    )
    job.start()
    job.join()
    assert job.exitcode == 9
    (tmp_path / "job").rename(tmp_path / "host")
    return tmp_path / "host" / "store"


@pytest.mark.parametrize("earlier", [False, True])
def test_a_batch_killed_before_its_move_is_moved_in_place_when_the_store_opens_at_another_path(
    tmp_path, earlier
):
    root = _killed_job_store(tmp_path)
    if earlier:  # an earlier smray's catalog: the staged paths absolute, where the job saw the store
        path = next(root.rglob("catalog.sqlite"))
        job_group = tmp_path / "job" / "store" / path.parent.relative_to(root)
        with sqlite3.connect(path) as catalog:
            catalog.execute("UPDATE files SET staged = ? || '/' || staged", (str(job_group),))
    store, group = _store(root)
    files = store.committed_files(group)
    assert files and all(f.exists() for f in files)
    assert not list((Path(group.offline_uri) / "staging").rglob("*.parquet"))
    assert store.get_record(group, "7")["PRICE"] == datagen.housing_frame(20, seed=9).loc[7, "PRICE"]
    again = store.put(group, datagen.housing_frame(20, seed=9))
    assert (again.written_offline, again.already_present) == (0, 20)


def test_a_committed_batch_whose_staged_files_are_gone_claims_no_rows_and_repair_drops_it(tmp_path):
    store, group = _store(_killed_job_store(tmp_path))
    staged = sorted((Path(group.offline_uri) / "staging").rglob("*.parquet"))
    for path in staged:
        path.unlink()
    with pytest.raises(PlatformError) as failure:
        store.committed_files(group)
    message = str(failure.value)
    named = [p for p in staged if p.name in message]  # the file, in place and staged
    assert len(named) == 1 and str(named[0]) in message and "smray store repair" in message, message
    assert "\n" not in message

    repaired = store.repair(group)
    assert sorted(Path(rel).name for rel in repaired.dropped) == sorted(p.name for p in staged)
    assert (repaired.kept, repaired.rows, repaired.online) == (0, 0, 0)
    assert store.committed_files(group) == [] and store.online_count(group) == 0
    again = store.put(group, datagen.housing_frame(20, seed=9))  # the rows were never in the store
    assert (again.written_offline, store.online_count(group)) == (20, 20)


def test_repair_drops_the_offline_files_a_power_cut_emptied_and_rebuilds_the_record_state(tmp_path, capsys):
    store, group = _store(tmp_path / "store")
    for batch in range(3):
        store.put(group, datagen.housing_frame(10, seed=batch, first_id=10 * batch))
    lost = store.committed_files(group)[0]
    lost_ids = set(pq.read_table(lost).column("record_id").to_pylist())
    lost.write_bytes(b"")
    for path in (Path(group.offline_uri) / "catalog").glob("*.parquet"):
        path.write_bytes(b"")  # every state file too

    with pytest.raises(SystemExit) as exit_:
        cli.main(["store", "repair", "--store", str(tmp_path / "store"), "housing"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert str(lost.relative_to(group.offline_uri)) in out and "1 offline file dropped" in out, out
    local_store._last_state.clear()
    assert store.online_count(group) == 30 - len(lost_ids) and not lost.exists()
    assert all(store.get_record(group, i) is None for i in lost_ids)
    written = [store.put(group, datagen.housing_frame(10, seed=b, first_id=10 * b)) for b in range(3)]
    assert sum(w.written_offline for w in written) == len(lost_ids) and store.online_count(group) == 30
