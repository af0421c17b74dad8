"""Experiment tracking: the local history, and MLflow's REST API against an explicit fake server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smray.errors import PlatformError
from smray.workstation import tracking

RUN = tracking.Run("abc123", 1_700_000_000.0, "Succeeded", {"hp_eta": "0.1"}, {"test_rmse": 4500.0})


class FakeMlflow(BaseHTTPRequestHandler):
    calls: list

    def do_GET(self):
        self.calls.append(("GET", self.path, None))
        self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path, body))
        answers = {
            "/api/2.0/mlflow/experiments/create": {"experiment_id": "7"},
            "/api/2.0/mlflow/runs/create": {"run": {"info": {"run_id": "r1"}}},
        }
        self._answer(200, answers.get(self.path, {}))

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def mlflow(monkeypatch):
    FakeMlflow.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
    yield FakeMlflow.calls
    server.shutdown()


def test_runs_are_recorded_locally_without_mlflow(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.record(tmp_path, RUN) is None
    tracking.record(tmp_path, RUN)
    assert tracking.history(tmp_path) == [RUN, RUN]


def test_a_run_is_logged_to_mlflow_when_a_server_is_named(tmp_path, mlflow):
    assert tracking.record(tmp_path, RUN) == "r1"
    paths = [(method, path.split("?")[0]) for method, path, _ in mlflow]
    assert paths == [
        ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
        ("POST", "/api/2.0/mlflow/experiments/create"),
        ("POST", "/api/2.0/mlflow/runs/create"),
        ("POST", "/api/2.0/mlflow/runs/log-batch"),
        ("POST", "/api/2.0/mlflow/runs/update"),
    ]
    batch = mlflow[3][2]
    assert batch["params"] == [{"key": "hp_eta", "value": "0.1"}]
    assert batch["metrics"][0]["key"] == "test_rmse" and batch["metrics"][0]["value"] == 4500.0
    assert mlflow[4][2]["status"] == "FINISHED"
    assert tracking.history(tmp_path) == [RUN]  # recorded locally as well


def test_an_unreachable_mlflow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(PlatformError, match=r"MLflow at .* is unreachable"):
        tracking.record(tmp_path, RUN)
