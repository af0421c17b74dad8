"""What smray writes is its user's alone: a home it creates is 0700, and the folders and files it writes
there 0700 and 0600, whatever the shell's umask and the input's own mode; `smray cluster`'s compose file,
which holds the Ray token, is 0600."""

import os
import stat

import pytest

from smray import paths
from smray.workstation import cli
from smray.workstation.local_cluster import LocalCluster, host_names, new_token
from tests.support.local_run import passing_pipeline
from tests.support.models import build_model


@pytest.fixture
def usual_umask():
    """A shell's usual umask (files 0644, folders 0755), whatever the test run's."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_run_keeps_the_home_it_creates_and_what_it_writes_there_private(tmp_path, monkeypatch, usual_umask):
    """The pipeline's containers are faked (they need Docker): tests/container/test_pipeline_local.py runs
    the real ones. Everything here is written by smray's own process: the fake stands where the SDK
    copies the jobs' outputs (and keeps their modes, under the home's 0700)."""
    home = tmp_path / "new" / "home"
    monkeypatch.setenv(paths.HOME_ENV, str(home))
    passing_pipeline(monkeypatch, build_model(tmp_path / "model", rounds=5))
    table = tmp_path / "houses.csv"
    table.write_text("a,b\n1,2\n")
    table.chmod(0o644)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "local", "--input", str(table), "--no-deploy"])
    assert exit_.value.code == 0
    assert _mode(home) == 0o700 and _mode(home.parent) == 0o700  # and the parent it had to make
    written = sorted(home.rglob("*"))
    assert {p.relative_to(home).parts[0] for p in written} >= {
        "home.lock",
        "inputs",
        "registry",
        "runs",
        "logs",
        "experiments.jsonl",
    }
    opened = {str(p.relative_to(home)): oct(_mode(p)) for p in written if _mode(p) not in (0o700, 0o600)}
    assert opened == {}
    assert _mode(table) == 0o644  # the user's own file is left as it was


def test_an_earlier_default_home_is_made_private(tmp_path, monkeypatch):
    """~/.smray (or /var/opt/smray for root) is smray's own folder: one an earlier smray made 0755 is
    closed; a SMRAY_HOME the user chose is left as they made it."""
    default = tmp_path / ".smray"
    default.mkdir(mode=0o755)
    default.chmod(0o755)
    monkeypatch.delenv(paths.HOME_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(paths, "ROOT_HOME", default)
    assert paths.home() == default and _mode(default) == 0o700
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    monkeypatch.setenv(paths.HOME_ENV, str(chosen))
    assert paths.home() == chosen and _mode(chosen) == 0o755


def test_the_cluster_s_compose_file_holding_the_ray_token_is_the_owner_s_alone(tmp_path, usual_umask):
    cluster = LocalCluster(
        tmp_path / "run", "smray:latest", ["cluster-check"], host_names(2), env=new_token()
    )
    compose = cluster.write()
    assert _mode(compose) == 0o600
    compose.chmod(0o644)  # an earlier one, rewritten
    assert _mode(cluster.write()) == 0o600
