"""The local feature store after a power cut: every file a commit lists (offline, record state, group and
schema) is on the disk before the commit, its folder entry too; a file that is not reads as a clear error
that names it and the repair command."""

import os
import sqlite3
from pathlib import Path

import pytest

from smray import errors
from smray import schema as schema_mod
from smray.errors import PlatformError
from smray.feature_store import local as local_store
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.workstation import datagen


class Recorder:
    """The file system operations (and catalog statements) in the order they happened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple] = []
        real = {name: getattr(os, name) for name in ("fsync", "replace", "rename", "link", "mkdir")}
        write, connect = local_store.pq.write_table, local_store.sqlite3.connect

        def fsync(fd):
            real["fsync"](fd)
            self.events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))

        def moving(name):
            def move(src, dst, *args, **kw):
                real[name](src, dst, *args, **kw)
                self.events.append(("move", Path(src).resolve(), Path(dst).resolve()))

            return move

        def mkdir(path, *args, **kw):
            real["mkdir"](path, *args, **kw)
            self.events.append(("mkdir", Path(path).resolve()))

        def write_table(table, where, **kw):
            write(table, where, **kw)
            self.events.append(("write", Path(where).resolve()))

        def recording_connect(*args, **kw):
            conn = connect(*args, **kw)
            conn.set_trace_callback(lambda sql: self.events.append(("sql", " ".join(sql.split()))))
            return conn

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "mkdir", mkdir)
        for name in ("replace", "rename", "link"):
            monkeypatch.setattr(os, name, moving(name))
        monkeypatch.setattr(local_store.pq, "write_table", write_table)
        monkeypatch.setattr(local_store.sqlite3, "connect", recording_connect)

    def first(self, event: tuple, after: int = -1) -> int:
        return next(i for i, e in enumerate(self.events) if i > after and e == event)

    def last(self, event: tuple, before: int) -> int:
        return max(i for i, e in enumerate(self.events[:before]) if e == event)

    def synced_between(self, path: Path, start: int, end: int) -> bool:
        return ("fsync", path) in self.events[start + 1 : end]

    def moved_to(self, target: Path) -> tuple[int, Path]:
        return next((i, e[1]) for i, e in enumerate(self.events) if e[0] == "move" and e[2] == target)


def _store(root: Path) -> tuple[LocalFeatureStore, FeatureGroupDefinition]:
    store = LocalFeatureStore(root)
    return store, store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))


def _listed(group: FeatureGroupDefinition) -> tuple[list[Path], list[Path]]:
    """The offline files and the state files the catalog lists."""
    root = Path(group.offline_uri).resolve()
    with sqlite3.connect(root / "catalog.sqlite") as catalog:
        offline = [root / p for (p,) in catalog.execute("SELECT path FROM files WHERE staged IS NULL")]
        state = [root / "catalog" / p for (p,) in catalog.execute("SELECT path FROM state_files")]
    return offline, state


def test_a_put_syncs_every_file_the_catalog_lists_and_its_folder_before_the_commit(tmp_path, monkeypatch):
    store, group = _store(tmp_path / "store")
    root = Path(group.offline_uri).resolve()
    recorder = Recorder(monkeypatch)
    store.put(group, datagen.housing_frame(200, seed=1))  # a day of event times: several hour folders
    monkeypatch.undo()
    commit = recorder.first(("sql", "COMMIT"))
    offline, state = _listed(group)
    assert len(offline) > 1 and state
    for path in state:  # written, synced, named in a synced folder: then committed
        written = recorder.last(("write", path), commit)
        assert recorder.synced_between(path, written, commit), path
        assert recorder.synced_between(path.parent, written, commit), path
    for path in offline:  # staged like a state file, committed, then moved into place
        moved, staged = recorder.moved_to(path)
        written = recorder.last(("write", staged), commit)
        assert recorder.synced_between(staged, written, commit), staged
        assert recorder.synced_between(staged.parent, written, commit), staged
        assert moved > commit
        # The commit that says the file is in place comes after the rename reached the disk.
        marked = next(i for i, e in enumerate(recorder.events) if i > moved and "staged = NULL" in str(e))
        assert recorder.synced_between(path.parent, moved, marked), path
        for folder in (p for p in path.parents if root in p.parents):  # its new folders' entries too
            made = recorder.first(("mkdir", folder))
            assert recorder.synced_between(folder.parent, made, marked), folder


def test_the_group_and_schema_files_are_synced_before_they_are_named(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    store, group = _store(tmp_path / "store")
    store.save_schema(group.name, schema_mod.housing())
    monkeypatch.undo()
    for path in (store._group_file("housing").resolve(), store._schema_file("housing").resolve()):
        moved, temporary = recorder.moved_to(path)
        assert recorder.synced_between(temporary, 0, moved), path
        assert recorder.synced_between(path.parent, moved, len(recorder.events)), path
    assert store.describe("housing") == group and store.schema("housing") == schema_mod.housing()


def _open_fails_naming(store: LocalFeatureStore, group: FeatureGroupDefinition, path: Path) -> None:
    local_store._last_state.clear()  # as a new process opens it
    with pytest.raises(PlatformError) as failure:
        store.online_count(group)
        store.committed_files(group)
    line = errors.one_line(failure.value)
    assert str(path) in line and "smray store repair" in line and "\n" not in str(failure.value), line


@pytest.mark.parametrize("lost", ["state", "offline"])
def test_a_listed_file_a_power_cut_emptied_is_named_with_the_repair_command(tmp_path, lost):
    store, group = _store(tmp_path / "store")
    store.put(group, datagen.housing_frame(50, seed=2))
    offline, state = _listed(group)
    emptied = (state if lost == "state" else offline)[0]
    emptied.write_bytes(b"")  # what a file whose bytes never reached the disk becomes
    _open_fails_naming(store, group, emptied)


def test_a_group_file_a_power_cut_emptied_is_named(tmp_path):
    store, _ = _store(tmp_path / "store")
    store._group_file("housing").write_bytes(b"")
    with pytest.raises(PlatformError, match=str(store._group_file("housing"))):
        store.describe("housing")
