"""Tables of every task, as a data scientist brings them: text features, empty cells, text labels and rows
without a target. `smray run local --schema` takes each through SageMaker local mode end to end, and the
endpoint answers raw rows, a category it never saw included; a binary table gated on accuracy both ways."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smray.registry.local import LocalRegistry
from smray.workstation import datagen
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import LocalEndpoints

from .conftest import IMAGE

SMRAY = str(Path(sys.executable).with_name("smray"))
QUICK = ["--processing-hosts", "1", "--tuning-trials", "2", "--num-round", "60", "--image", IMAGE]


def _table(tmp_path: Path, task: str, rows: int) -> tuple[Path, Path, pd.DataFrame]:
    """A generated table of `task` in CSV, a few of its targets emptied: they must be set aside."""
    data = tmp_path / task
    made = datagen.generate(data, rows=rows, files=2, fmt="csv", seed=3, with_ids=True, task=task)
    first = pd.read_csv(made.files[0], dtype=str, keep_default_na=False)
    target = json.loads(made.schema.read_text())["target"]
    first.loc[:4, target] = ""  # five rows without a target
    first.to_csv(made.files[0], index=False)
    return data, made.schema, first


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMRAY, "run", "local", *args, *QUICK],
        capture_output=True,
        text=True,
        env={**os.environ, "SMRAY_HOME": str(home)},
        timeout=800,
    )


def _quarantined(home: Path) -> int:
    """What the latest run's ingest set aside."""
    newest = max((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return int(json.loads((newest / "ingest" / "ingest.json").read_text())["quarantined"])


@pytest.mark.timeout(1200)
def test_a_binary_table_of_text_and_gaps_is_gated_on_accuracy_both_ways(home, tmp_path):
    data, schema, sample = _table(tmp_path, "binary", 2000)
    passing = _run(home, "--input", str(data), "--schema", str(schema), "--gate", "accuracy >= 0.8")
    assert passing.returncode == 0, passing.stdout[-3000:] + passing.stderr[-3000:]
    assert re.search(r"gate\s+passed \(accuracy 0\.\d+ >= 0\.8\): registered churn/1", passing.stdout)
    metrics_line = r"test metrics\s+accuracy 0\.\d+ \(± 0\.\d+\), AUC 0\.\d+"
    assert re.search(metrics_line, passing.stdout), passing.stdout
    assert _quarantined(home) == 5  # the rows without a target, set aside and counted

    endpoint = LocalEndpoints(home).describe("churn")
    rows = sample.iloc[10:13][["tenure", "state", "plan", "minutes", "calls"]].copy()  # any column order
    rows.iloc[0, rows.columns.get_loc("state")] = "ZZ"  # a state the table never had
    rows.iloc[1, rows.columns.get_loc("minutes")] = ""  # and an empty cell
    answer = Connection(endpoint.url).invoke(rows.to_csv(index=False).encode(), "text/csv")
    assert answer.status == 200, answer.body
    probabilities = [float(v) for v in answer.body.split()]
    assert len(probabilities) == 3 and all(0 <= p <= 1 for p in probabilities)
    answer = Connection(endpoint.url).invoke(
        rows.to_csv(index=False).encode(), "text/csv", accept="application/json"
    )
    predictions = json.loads(answer.body)["predictions"]
    assert {p["predicted_label"] for p in predictions} <= {"no", "yes"}
    assert [p["score"] for p in predictions] == pytest.approx(probabilities, abs=1e-6)
    assert set(predictions[0]["probabilities"]) == {"no", "yes"}

    refused = _run(home, "--input", str(data), "--schema", str(schema), "--gate", "accuracy >= 0.999")
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert re.search(r"refused: test accuracy 0\.\d+ is below 0\.999", refused.stdout), refused.stdout
    assert [v.version for v in LocalRegistry(home / "registry").versions("churn")] == [1]  # none added
    assert LocalEndpoints(home).describe("churn").model == "churn/1"  # the endpoint is unchanged


@pytest.mark.timeout(900)
def test_a_multiclass_table_answers_the_data_s_own_labels(home, tmp_path):
    data, schema, sample = _table(tmp_path, "multiclass", 2400)
    run = _run(home, "--input", str(data), "--schema", str(schema))  # the task's default gate
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"gate\s+passed \(accuracy 0\.\d+ >= 0\.5\): registered segments/1", run.stdout)
    assert re.search(r"test metrics\s+accuracy 0\.\d+ \(± 0\.\d+\), weighted F1 0\.\d+", run.stdout)
    assert _quarantined(home) == 5

    endpoint = LocalEndpoints(home).describe("segments")
    features = ["region", "channel", "spend", "visits", "age", "household"]
    rows = sample.iloc[10:14][features].copy()
    rows.iloc[0, 0] = "moon"  # a region the table never had
    csv = Connection(endpoint.url).invoke(rows.to_csv(index=False).encode(), "text/csv")
    assert csv.status == 200, csv.body
    labels = csv.body.decode().split()
    assert len(labels) == 4 and set(labels) <= set(datagen.SEGMENTS)
    body = json.dumps({"instances": rows.to_dict("records")}).encode()
    answer = Connection(endpoint.url).invoke(body, "application/json", accept="application/json")
    assert answer.status == 200, answer.body
    predictions = json.loads(answer.body)["predictions"]
    assert [p["predicted_label"] for p in predictions] == labels
    assert all(sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5) for p in predictions)
    assert set(predictions[0]["probabilities"]) == set(datagen.SEGMENTS)
