"""The main job end to end: `smray run local` drives the SageMaker Pipeline through SageMaker local mode
on the real engine, with 2-host processing and a 2-host training job, takes the gate's pass branch and
goes on to register, approve, deploy and invoke; its report renders in headless Chromium. (The FailStep
branch runs in test_schedule_local.py, whose second run fails the gate.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smray import model_artifact
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import LocalEndpoints
from tests.support.report import GREEN, RED, has_colour, screenshot

from .conftest import IMAGE

SMRAY = str(Path(sys.executable).with_name("smray"))
DATA = Path(__file__).parents[2] / "data" / "house_pricing.csv"
FAST = ["--num-round", "30", "--tuning-trials", "2", "--image", IMAGE]


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SMRAY_HOME": str(home)}
    return subprocess.run(
        [SMRAY, "run", "local", "--input", str(DATA), *FAST, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _exited_containers_mounting(folder: Path) -> list[str]:
    """Exited containers with a mount from `folder` (every job container of a run mounts its SMRAY_HOME):
    this test's own, never a user's."""
    listed = ["docker", "ps", "--all", "--quiet", "--filter", "status=exited"]
    ids = subprocess.run(listed, capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    fmt = "{{.Name}} {{range .Mounts}}{{.Source}} {{end}}"
    inspected = subprocess.run(["docker", "inspect", "--format", fmt, *ids], capture_output=True, text=True)
    return [
        line.split()[0]
        for line in inspected.stdout.splitlines()
        if any(source.startswith(f"{folder}/") for source in line.split()[1:])
    ]


def _report(stdout: str) -> Path:
    return Path(re.search(r"report\s+(\S+report\.html)", stdout)[1])


@pytest.mark.timeout(1500)
def test_the_pass_branch_end_to_end_on_two_hosts(home, tmp_path):
    passed = _run(home, "--processing-hosts", "2", "--training-hosts", "2", "--threshold", "30000")
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    out = passed.stdout
    for step in (
        "FeatureStoreIngestion",
        "PreprocessData",
        "TrainWithTuning",
        "EvaluateModel",
        "RegisterTrainedModel",
    ):
        assert re.search(rf"{step}\s+Succeeded", out), out
    rmse = float(re.search(r"RMSE ([\d,]+) \(", out)[1].replace(",", ""))
    assert rmse <= 30000
    assert _exited_containers_mounting(home) == []  # each job's containers were removed after it
    (version,) = LocalRegistry(home / "registry").versions("housing")
    assert version.status is Approval.APPROVED and version.rmse() == pytest.approx(rmse, abs=1)
    endpoint = LocalEndpoints(home).describe("housing")
    assert endpoint.model == "housing/1"
    row = "1,2,3,4,5,6,7,8,9,10,11,12"  # a wrong row still gets a clear answer from the live endpoint
    assert Connection(endpoint.url).invoke(row.encode(), "text/csv").status == 400
    execution = re.search(r"execution\s+(\w+) Succeeded", out)[1]
    folder = home / "runs" / execution
    assert len(json.loads((folder / "ingest" / "ingest.json").read_text())["hosts"]) == 2
    preprocess = json.loads((folder / "preprocess" / "preprocess.json").read_text())
    assert sum(preprocess["splits"].values()) > 9000
    trained = model_artifact.load(folder / "model" / "model.tar.gz").metadata
    assert trained["engine"] == "collective x2", trained["engine"]  # both hosts trained, each on its share
    assert len({w["host"] for w in trained["workers"]}) == 2 and all(
        w["rows"] > 0 for w in trained["workers"]
    )
    assert len({t["host"] for t in trained["tuning_trials"]}) == 2  # the trials ran on both hosts
    shot = screenshot(_report(out), tmp_path / "passed.png")
    assert has_colour(shot, GREEN)  # succeeded steps drawn green
    assert not has_colour(shot, RED, at_least=1)  # no failed step
