"""The local model registry: versions, approval, concurrent writers and writers killed mid-write."""

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval

METRICS = {"regression_metrics": {"rmse": {"value": 4321.0, "standard_deviation": 50.0}}}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text('{"learner": {}}')
    (folder / "metadata.json").write_text("{}")
    return folder


def test_versions_count_up_and_approval_moves(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "registry")
    first = registry.register("housing", model_dir, "smray:1", METRICS, execution="exec-1")
    second = registry.register("housing", model_dir, "smray:1", METRICS, execution="exec-2")
    assert (first.version, second.version) == (1, 2)
    assert first.status is Approval.PENDING
    assert first.rmse() == 4321.0
    with tarfile.open(first.artifact) as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "model.json"]

    approved = registry.set_status("housing", 1, Approval.APPROVED, "good enough")
    assert approved.status is Approval.APPROVED and approved.description == "good enough"
    assert registry.latest("housing", Approval.APPROVED).version == 1
    assert registry.latest("housing").version == 2
    assert [v.version for v in registry.versions("housing")] == [2, 1]
    assert registry.describe("housing", 2).execution == "exec-2"
    assert registry.groups() == ["housing"]


def test_bad_requests_are_clear(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(UserError, match="invalid model package group name"):
        registry.register("no spaces", model_dir, "smray:1", METRICS)
    with pytest.raises(UserError, match="does not exist"):
        registry.register("housing", tmp_path / "missing", "smray:1", METRICS)
    with pytest.raises(UserError, match="no model version housing/7"):
        registry.set_status("housing", 7, Approval.APPROVED)
    assert registry.versions("housing") == []


@pytest.mark.parametrize("content", [b"not a database" * 10, b"SQLite format 3\x00" + b"\x01" * 200])
def test_a_corrupt_database_is_named(tmp_path, model_dir, content):
    registry = LocalRegistry(tmp_path / "registry")
    registry.register("housing", model_dir, "smray:1", METRICS)
    (tmp_path / "registry" / "registry.db").write_bytes(content)
    where = f"{tmp_path / 'registry' / 'registry.db'} is not a usable registry"
    for call in (
        registry.groups,
        lambda: registry.versions("housing"),
        lambda: registry.set_status("housing", 1, Approval.APPROVED),
    ):
        with pytest.raises(UserError, match=where):
            call()


def _register_many(root: str, model: str, count: int) -> None:
    registry = LocalRegistry(Path(root))
    for _ in range(count):
        registry.register("housing", Path(model), "smray:1", METRICS, execution=f"pid-{os.getpid()}")


def test_concurrent_writers_get_distinct_versions(tmp_path, model_dir):
    root = tmp_path / "registry"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_register_many, args=(str(root), str(model_dir), 5)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    versions = LocalRegistry(root).versions("housing")
    assert sorted(v.version for v in versions) == list(range(1, 21))
    assert len({v.execution for v in versions}) == 4


WRITER = """
import sys
from pathlib import Path
from smray.registry.local import LocalRegistry
registry = LocalRegistry(Path(sys.argv[1]))
print("ready", flush=True)
while True:
    registry.register("housing", Path(sys.argv[2]), "smray:1", {})
"""


def test_a_writer_killed_mid_write_leaves_the_registry_readable(tmp_path, model_dir):
    (model_dir / "weights.bin").write_bytes(os.urandom(8 * 1024 * 1024))  # a copy takes a while
    root = tmp_path / "registry"
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(model_dir)], stdout=subprocess.PIPE
        )
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        registry = LocalRegistry(root)
        versions = registry.versions("housing")
        for v in versions:  # every listed version has its whole artifact
            with tarfile.open(v.artifact) as tar:
                assert "weights.bin" in tar.getnames()
        assert len({v.version for v in versions}) == len(versions)
    highest_listed = max(v.version for v in LocalRegistry(root).versions("housing"))
    after = LocalRegistry(root).register("housing", model_dir, "smray:1", {})
    assert after.version > highest_listed
    assert after.version not in {v.version for v in LocalRegistry(root).versions("housing")[1:]}


def test_the_artifact_s_rename_is_made_durable_by_syncing_its_folder(tmp_path, model_dir, monkeypatch):
    import stat

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    LocalRegistry(tmp_path / "registry").register("housing", model_dir, "smray:latest", METRICS)
    assert synced[-2:] == [False, True]  # the artifact, then (after its rename) the folder holding it


def test_a_model_archive_is_bounded_and_loses_special_permission_bits(tmp_path):
    from smray import model_artifact

    payload = tmp_path / "payload"
    payload.write_bytes(b"x" * 5000)
    os.chmod(payload, 0o6777)  # setuid, setgid, world-writable
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="model.json")
    with pytest.raises(UserError, match="unpacks to 5,000 bytes, over the limit of 4,096"):
        model_artifact.extract(archive, tmp_path / "small", max_bytes=4096)
    model_artifact.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model.json").stat().st_mode & 0o7777 == 0o700


def _archive(path: Path, members: dict[str, bytes], uid: int = 0) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.uname, info.gname = len(data), uid, uid, "", ""
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's extraction applies an archive's owners")
def test_a_model_archive_extracted_as_root_keeps_root_as_the_owner(tmp_path):
    from smray import model_artifact

    archive = _archive(tmp_path / "model.tar.gz", {"model.json": b"{}", "data/part.bin": b"x"}, uid=4242)
    model_artifact.extract(archive, tmp_path / "out")
    for path in [
        tmp_path / "out" / "model.json",
        tmp_path / "out" / "data",
        tmp_path / "out" / "data" / "part.bin",
    ]:
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0), path


@pytest.mark.parametrize("name", ["../escaped.json", "/tmp/absolute.json", "model/../../escaped.json"])
def test_a_model_archive_entry_outside_its_folder_is_refused_before_anything_is_written(tmp_path, name):
    from smray import model_artifact

    archive = _archive(tmp_path / "model.tar.gz", {"model.json": b"{}", name: b"x"}, uid=4242)
    with pytest.raises(UserError, match="holds an unsafe entry"):
        model_artifact.extract(archive, tmp_path / "deep" / "out")
    assert not (tmp_path / "deep" / "escaped.json").exists() and not (tmp_path / "deep" / "out").exists()
