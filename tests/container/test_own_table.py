"""A user's own table, not houses: another name, other columns, another target, an id column of its own,
spread over a folder of partitions whose files share a base name. `smray run local --schema` takes it
through SageMaker local mode end to end, and the endpoint named after the table predicts from that
table's raw features."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smray.feature_store.local import LocalFeatureStore
from smray.registry.local import LocalRegistry
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import LocalEndpoints

from .conftest import IMAGE

SMRAY = str(Path(sys.executable).with_name("smray"))
SCHEMA = """{
  "name": "churn", "target": "MONTHS_STAYED", "record_id": "customer", "event_time": "seen_at",
  "features": [{"name": "CALLS", "type": "integral"}, {"name": "MONTHLY_FEE"}, {"name": "DISCOUNT"}],
  "rules": [{"column": "MONTHLY_FEE", "min": 0, "policy": "quarantine"}]
}"""


def _table(rows: int, seed: int, first: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    calls = rng.integers(0, 30, rows)
    fee = rng.uniform(10, 120, rows).round(2)
    discount = rng.uniform(0, 0.5, rows).round(3)
    months = 40 - 0.8 * calls - 0.15 * fee + 30 * discount + rng.normal(0, 1.5, rows)
    return pd.DataFrame(
        {
            "customer": [f"c{first + i}" for i in range(rows)],
            "MONTHLY_FEE": fee,
            "CALLS": calls,
            "MONTHS_STAYED": months.round(2),
            "DISCOUNT": discount,
        }
    )


@pytest.mark.timeout(900)
def test_a_user_s_own_table_goes_end_to_end(home, tmp_path):
    data = tmp_path / "customers"
    for part, (region, seed) in enumerate((("north", 1), ("south", 2))):
        folder = data / f"region={region}"
        folder.mkdir(parents=True)
        _table(600, seed, first=part * 600).to_csv(folder / "part-0.csv", index=False)  # same base name
    (tmp_path / "churn.json").write_text(SCHEMA)
    table = ["--input", str(data), "--schema", str(tmp_path / "churn.json"), "--image", IMAGE]
    quick = ["--processing-hosts", "1", "--tuning-trials", "2", "--num-round", "40", "--threshold", "5"]
    run = subprocess.run(
        [SMRAY, "run", "local", *table, *quick],
        capture_output=True,
        text=True,
        env={**os.environ, "SMRAY_HOME": str(home)},
        timeout=800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"gate\s+passed .*registered churn/1", run.stdout), run.stdout

    store = LocalFeatureStore(home / "feature-store")
    group = store.describe("churn")  # the table's name names its feature group
    assert store.online_count(group) == 1200  # both partitions, nothing lost
    assert store.schema("churn").target == "MONTHS_STAYED"
    (version,) = LocalRegistry(home / "registry").versions("churn")
    assert version.status.value == "Approved"
    endpoint = LocalEndpoints(home).describe("churn")
    assert endpoint.model == "churn/1"
    rows = _table(3, seed=9, first=5000)
    body = rows[["DISCOUNT", "CALLS", "MONTHLY_FEE"]].to_csv(index=False).encode()  # raw, any order
    answer = Connection(endpoint.url).invoke(body, "text/csv")
    assert answer.status == 200, answer.body
    predicted = np.array([float(v) for v in answer.body.split()])
    assert np.abs(predicted - rows["MONTHS_STAYED"].to_numpy()).max() < 6, (predicted, rows)
