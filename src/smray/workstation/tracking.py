"""Experiment tracking: every training run's parameters and metrics, appended to
`<home>/experiments.jsonl` (so runs can be compared with `smray runs`), and logged to an MLflow tracking
server when MLFLOW_TRACKING_URI is set (the way SageMaker's managed MLflow tracks experiments), through
MLflow's REST API: no MLflow client library in the image or on the host."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smray.errors import PlatformError, UserError
from smray.workstation import jsonl, validation

FILE = "experiments.jsonl"
EXPERIMENT_PREFIX = "smray-"  # + the feature group (the table's name): smray-housing
URI_ENV = "MLFLOW_TRACKING_URI"
LAST_TIME = 1e11  # epoch seconds: the year 5138, well before datetime's last
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")  # user:password@ of scheme://user:password@host/...


@dataclass(frozen=True)
class Run:
    execution: str
    started: float  # epoch seconds
    status: str
    params: dict[str, str]
    metrics: dict[str, float]


def redact(uri: str) -> str:
    """`uri` as shown to people: a user and password in it replaced by ***."""
    return _USERINFO.sub("***@", uri)


def server_uri() -> str:
    """MLFLOW_TRACKING_URI when it names an MLflow server (http or https), else "" (other kinds, such as
    a local folder, are MLflow client's own: nothing to log to here). A URL that cannot be used is
    refused now, before a run, not after it."""
    uri = os.environ.get(URI_ENV, "")
    return check_url(uri, URI_ENV) if uri.startswith(("http://", "https://")) else ""


def check_url(uri: str, what: str) -> str:
    """`uri`, when an HTTP client can use it; else a UserError naming `what`, the credentials hidden."""
    try:
        parts = urllib.parse.urlsplit(uri)
        usable = bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number or past 65535, a broken [IPv6] host
        usable = False
    if not usable:
        raise UserError(f"{what} {redact(uri)} is not a usable URL: scheme://[user:password@]host[:port]")
    return uri


def record(home: Path, run: Run) -> str | None:
    """Appends the run locally; returns the MLflow run id when a tracking server took it."""
    jsonl.append(home / FILE, asdict(run))
    uri = server_uri()
    return MlflowRest(uri).log(run) if uri else None


def history(home: Path) -> list[Run]:
    return jsonl.read(home / FILE, _run)


def _run(raw: dict[str, Any]) -> Run:
    run = validation.record(Run, raw)
    if not 0 <= run.started < LAST_TIME:  # `smray runs` shows it as a date
        raise ValueError(f"started {run.started!r} is not a time")
    return run


class MlflowRest:
    """The few MLflow REST calls a finished run needs: experiment, run, one batch of values, end."""

    def __init__(self, uri: str, timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(uri)
        # Credentials in the URL go as HTTP basic auth, as MLflow's client sends them; urllib would take
        # user:password@ for a part of the host.
        self.headers = {"Content-Type": "application/json"}
        if parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.netloc.rpartition("@")[2]
        self.base = urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/") + "/api/2.0/mlflow"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {"error_code": "RESOURCE_DOES_NOT_EXIST"}
            raise UserError(
                f"MLflow at {self.base}: {method} {path} -> HTTP {exc.code}: {exc.read()[:200]!r}"
            ) from exc
        except OSError as exc:
            raise PlatformError(f"MLflow at {self.base} is unreachable: {exc}") from exc

    def log(self, run: Run) -> str:
        name = EXPERIMENT_PREFIX + run.params.get("FeatureGroupName", "housing")
        found = self._call(
            "GET", f"/experiments/get-by-name?{urllib.parse.urlencode({'experiment_name': name})}"
        )
        if "experiment" in found:
            experiment = found["experiment"]["experiment_id"]
        else:
            experiment = self._call("POST", "/experiments/create", {"name": name})["experiment_id"]
        created = self._call(
            "POST",
            "/runs/create",
            {"experiment_id": experiment, "run_name": run.execution, "start_time": int(run.started * 1000)},
        )
        run_id = created["run"]["info"]["run_id"]
        now = int(time.time() * 1000)
        self._call(
            "POST",
            "/runs/log-batch",
            {
                "run_id": run_id,
                "params": [{"key": k, "value": str(v)[:500]} for k, v in sorted(run.params.items())],
                "metrics": [
                    {"key": k, "value": v, "timestamp": now, "step": 0}
                    for k, v in sorted(run.metrics.items())
                ],
                "tags": [{"key": "smray.execution", "value": run.execution}],
            },
        )
        status = "FINISHED" if run.status == "Succeeded" else "FAILED"
        self._call("POST", "/runs/update", {"run_id": run_id, "status": status, "end_time": now})
        return run_id
