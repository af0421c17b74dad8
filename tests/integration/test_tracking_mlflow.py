"""Tracking against the real thing: a real MLflow tracking server (requirements/test-mlflow.lock, in a venv
of its own under build/test-mlflow, made by this test on first use), written by smray's REST calls and
read back by MLflow's own client. tests/unit/test_tracking.py keeps a fake server only for the exact calls
and for an unreachable server."""

import json
import subprocess

import pytest

from smray.errors import UserError
from smray.workstation import tracking
from tests.support import mlflow

READ_BACK = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
print(json.dumps([
    {"name": r.info.run_name, "status": r.info.status, "params": r.data.params,
     "metrics": r.data.metrics, "tags": {k: v for k, v in r.data.tags.items() if k.startswith("smray.")}}
    for r in runs
]))
"""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with mlflow.server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def _runs(url: str, experiment: str) -> list[dict]:
    out = subprocess.run(
        [str(mlflow.python()), "-c", READ_BACK, url, experiment], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_runs_logged_by_smray_are_what_mlflow_s_own_client_reads(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    good = tracking.Run(
        "exec-1",
        1_700_000_000.0,
        "Succeeded",
        {"FeatureGroupName": "housing", "hp_eta": "0.1"},
        {"test_rmse": 4159.5, "validation_rmse": 4012.25},
    )
    failed = tracking.Run("exec-2", 1_700_000_100.0, "Failed", {"FeatureGroupName": "housing"}, {})
    first, second = tracking.record(tmp_path, good), tracking.record(tmp_path, failed)
    assert first and second and first != second

    runs = _runs(mlflow_server, "smray-housing")  # one experiment per table, found again the second time
    assert [(r["name"], r["status"]) for r in runs] == [("exec-1", "FINISHED"), ("exec-2", "FAILED")]
    assert runs[0]["params"] == {"FeatureGroupName": "housing", "hp_eta": "0.1"}
    assert runs[0]["metrics"] == {"test_rmse": 4159.5, "validation_rmse": 4012.25}
    assert runs[0]["tags"] == {"smray.execution": "exec-1"}
    assert tracking.history(tmp_path) == [good, failed]  # and the local history has both


def test_a_value_the_server_refuses_is_a_clear_error_and_the_run_stays_local(
    mlflow_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    long_key = tracking.Run("exec-3", 1_700_000_200.0, "Succeeded", {"k" * 300: "v"}, {})
    with pytest.raises(UserError, match=r"MLflow at .*runs/log-batch -> HTTP 400"):
        tracking.record(tmp_path, long_key)
    assert tracking.history(tmp_path) == [long_key]
