"""Experiment tracking: the local history, and MLflow's REST API against an explicit fake server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smray.errors import PlatformError, UserError
from smray.workstation import tracking

RUN = tracking.Run("abc123", 1_700_000_000.0, "Succeeded", {"hp_eta": "0.1"}, {"test_rmse": 4500.0})


class FakeMlflow(BaseHTTPRequestHandler):
    calls: list
    auth: list  # each request's Authorization header

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
        self.auth.append(self.headers.get("Authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def mlflow(monkeypatch):
    FakeMlflow.calls, FakeMlflow.auth = [], []
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


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://user:s3cret@mlflow.example/path", "https://***@mlflow.example/path"),
        ("http://u:p@ss@127.0.0.1:5000", "http://***@127.0.0.1:5000"),  # an unquoted @ in the password
        ("http://token@host:5000/a@b", "http://***@host:5000/a@b"),  # an @ in the path is not userinfo
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("s3://bucket/raw/", "s3://bucket/raw/"),
    ],
)
def test_credentials_in_a_uri_are_redacted(uri, shown):
    assert tracking.redact(uri) == shown


def test_credentials_go_as_basic_auth_and_are_never_shown(tmp_path, mlflow, monkeypatch):
    import base64
    import os

    server = os.environ["MLFLOW_TRACKING_URI"].removeprefix("http://")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ann:s3cret@{server}")
    assert tracking.record(tmp_path, RUN) == "r1"
    assert set(FakeMlflow.auth) == {"Basic " + base64.b64encode(b"ann:s3cret").decode()}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ann:s3cret@127.0.0.1:9")  # https, and nothing there
    with pytest.raises(PlatformError, match=r"MLflow at https://127\.0\.0\.1:9/api/2\.0/mlflow is unr") as e:
        tracking.record(tmp_path, RUN)
    assert "s3cret" not in str(e.value)


def test_the_summary_of_a_run_mlflow_did_not_take_shows_no_password(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from smray import gate
    from smray.schema import Task
    from smray.workstation import local_workflow as flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ann:s3cret@127.0.0.1:9")
    execution = SimpleNamespace(id="e1", status="Succeeded", seconds=1.0, parameters={})
    result = flow.Result(execution, None, flow.Gate(gate.default(Task.REGRESSION), None, failed="x"), None)
    result.tracking = flow._track(tmp_path, result, 0.0)  # what the summary and report.html show
    line = result.summary()["tracking"]
    assert line.startswith("FAILED: MLflow at https://127.0.0.1:9/") and "s3cret" not in line


@pytest.mark.parametrize("uri", ["http://[::1/", "https://user:s3cret@host:port/", "http:///path"])
def test_an_unusable_tracking_uri_is_refused_without_its_password(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(UserError, match=r"MLFLOW_TRACKING_URI .* is not a usable URL") as e:
        tracking.server_uri()
    assert "s3cret" not in str(e.value)


def test_a_torn_last_line_is_ignored_then_cut_off_by_the_next_record(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.record(tmp_path, RUN)
    with open(tmp_path / tracking.FILE, "a") as handle:
        handle.write('{"execution": "torn", "sta')  # a crash mid-append
    assert tracking.history(tmp_path) == [RUN]
    tracking.record(tmp_path, RUN)
    assert tracking.history(tmp_path) == [RUN, RUN]
    (tmp_path / tracking.FILE).write_text('{"execution": "x"}\n' + (tmp_path / tracking.FILE).read_text())
    with pytest.raises(UserError, match=r"experiments\.jsonl, line 1: not a record"):
        tracking.history(tmp_path)
