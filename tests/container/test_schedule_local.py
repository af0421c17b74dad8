"""The local retraining loop on a short schedule: it retrains twice and deploys once. The endpoint starts
out serving a weak model; the first run's model beats it on the run's test set and is swapped in; the
second run's model is deliberately worse (2 boosting rounds, and a threshold it cannot meet): SageMaker
local mode takes the FailStep branch and nothing is deployed. A client polls the endpoint all the while
and never gets an error. (A model that passes the gate but is worse than the served one is rejected in
tests/unit/test_schedule_loop.py.)"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smray.registry.local import LocalRegistry
from smray.registry.records import Approval
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import LocalEndpoints
from smray.workstation.schedule import local_loop
from tests.support.models import build_model, sample_rows
from tests.support.report import RED, has_colour, screenshot

from .conftest import IMAGE

SMRAY = str(Path(sys.executable).with_name("smray"))
DATA = Path(__file__).parents[2] / "data" / "house_pricing.csv"


class Poller(threading.Thread):
    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.ok, self.errors = url, threading.Event(), 0, []
        self.body = sample_rows(2).to_csv(index=False).encode()

    def run(self):
        conn = Connection(self.url)
        while not self.stop.is_set():
            try:
                answer = conn.invoke(self.body, "text/csv")
                if answer.status == 200:
                    self.ok += 1
                else:
                    self.errors.append(f"HTTP {answer.status}")
            except OSError as exc:
                self.errors.append(repr(exc))
                conn.close()
            time.sleep(0.05)


def _wait_for(predicate, timeout_s: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process.poll() is not None:
            pytest.fail(
                f"the scheduler exited ({process.returncode}) before {what}: {process.stdout.read()[-3000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s} s")
        time.sleep(1)


@pytest.mark.timeout(1500)
def test_retrains_twice_deploys_once_and_never_fails_a_client(docker_client, tmp_path):
    home = tmp_path / "home"
    registry = LocalRegistry(home / "registry")
    weak = registry.register("housing", build_model(tmp_path / "weak", rounds=3), IMAGE, {})
    registry.set_status("housing", weak.version, Approval.APPROVED, "the model served before the schedule")
    endpoints = LocalEndpoints(home)
    endpoint = endpoints.deploy("houses", registry.describe("housing", weak.version))
    poller = Poller(endpoint.url)
    poller.start()

    settings = {
        "DataUri": str(DATA),
        "Threshold": 1e9,
        "EndpointName": "houses",
        "Image": IMAGE,
        "ProcessingInstanceCount": 1,
        "TrainingInstanceCount": 1,
        "NumRound": 60,
        "TuningTrials": 1,
    }
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(settings))
    scheduler = subprocess.Popen(
        [
            SMRAY,
            "schedule",
            "run",
            "--every",
            "rate(1 minute)",
            "--input",
            str(input_file),
            "--max-runs",
            "2",
            "--run-now",
        ],
        env={**os.environ, "SMRAY_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the first run has read its input once its run folder exists: the next run gets a worse one
        _wait_for(lambda: any((home / "runs").glob("*/ingest")), 900, "the first run's ingest", scheduler)
        input_file.write_text(json.dumps({**settings, "NumRound": 2, "Threshold": 1}))  # deliberately worse
        out, _ = scheduler.communicate(timeout=900)
    finally:
        poller.stop.set()
        poller.join(timeout=30)
        if scheduler.poll() is None:
            scheduler.kill()
        for e in endpoints.list():
            endpoints.delete(e.name)

    assert scheduler.returncode == 0, out[-3000:]
    first, second = local_loop.history(home)
    assert first["decision"].startswith("deployed housing/2"), first
    assert first["served_before"] == "housing/1" and first["new_score"] < first["served_score"]
    assert first["metric"] == "rmse"
    assert re.match(r"not deployed: refused: test RMSE [\d,.]+ is above 1", second["decision"]), second
    assert second["status"] == "Failed" and second["served_after"] == "housing/2"
    assert [(v.version, v.status) for v in registry.versions("housing")] == [
        (2, Approval.APPROVED),
        (1, Approval.APPROVED),
    ]
    folder = home / "runs" / second["execution"]
    assert json.loads((folder / "ingest" / "ingest.json").read_text())["written"] == 0  # same input: reused
    shot = screenshot(folder / "report.html", tmp_path / "failed.png")
    assert has_colour(shot, RED)  # the FailStep drawn red
    assert "next run at" in out and "stopped after 2 run(s)" in out
    assert poller.errors == [] and poller.ok > 100, (poller.ok, poller.errors[:5])
