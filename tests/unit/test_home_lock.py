"""One command at a time writes an smray home (`smray run local`, a scheduled run, a local deploy or
delete): a second is refused at once, in one line naming the holder, before it starts anything; a holder
that died holds nothing."""

import json
import os
import subprocess
import sys

import pytest

from smray import locks
from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval
from smray.workstation import cli
from smray.workstation.schedule import local_loop
from smray.workstation.schedule.expressions import parse
from tests.support.models import build_model

HOLD = """
import sys, time
from pathlib import Path
from smray import locks
with locks.writing_home(Path(sys.argv[1]), "smray run local"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(own_smray_home):
    """Another process running `smray run local` on the home."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(own_smray_home)], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"held\n"
    yield process
    process.kill()
    process.wait()


def _names_the_holder(line: str, holder: subprocess.Popen) -> bool:
    return f"pid {holder.pid} (smray run local, started " in line and "\n" not in line


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(own_smray_home, holder):
    with pytest.raises(UserError) as refused, locks.writing_home(own_smray_home, "smray deploy"):
        pytest.fail("the home was taken while another process held it")
    assert _names_the_holder(str(refused.value), holder), refused.value


def test_a_holder_that_died_holds_nothing(own_smray_home, holder):
    holder.kill()
    holder.wait()
    with locks.writing_home(own_smray_home, "smray deploy"):
        held_by = (own_smray_home / locks.HOME_LOCK).read_text()
        assert held_by.startswith(f"pid {os.getpid()} (smray deploy, started ")


@pytest.mark.parametrize(
    "argv", [["run", "local"], ["deploy", "--name", "houses"], ["endpoints", "delete", "houses"]]
)
def test_commands_that_write_the_home_are_refused_before_they_start(
    argv, own_smray_home, holder, nothing_starts, capsys
):
    registry = LocalRegistry(own_smray_home / "registry")
    version = registry.register("housing", build_model(own_smray_home / "model", rounds=5), "smray:1", {})
    registry.set_status(version.group, version.version, Approval.APPROVED, "for the deploy")
    endpoint = own_smray_home / "endpoints" / "houses" / "endpoint.json"  # one to delete: a name with
    endpoint.parent.mkdir(parents=True)  # none is refused before the lock, with nothing to say of a holder
    endpoint.write_text(
        json.dumps(
            {
                "name": "houses",
                "url": "http://127.0.0.1:9",
                "port": 9,
                "group": "housing",
                "version": version.version,
                "image": "smray:1",
                "container": "m1",
                "router": "r1",
                "updated": "2025-01-01",
            }
        )
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert isinstance(exit_.value.code, str) and _names_the_holder(exit_.value.code, holder), exit_.value.code


def test_a_scheduled_run_is_refused_and_recorded_and_the_scheduler_goes_on(
    own_smray_home, holder, nothing_starts, tmp_path
):
    (tmp_path / "input.json").write_text(json.dumps({"DataUri": str(tmp_path)}))
    scheduler = local_loop.Scheduler(
        own_smray_home, parse("rate(1 day)"), tmp_path / "input.json", max_runs=1, run_now=True
    )
    assert scheduler.run() == 0
    (run,) = local_loop.history(own_smray_home)
    assert run["decision"].startswith("run failed: ") and _names_the_holder(run["decision"], holder)
