"""Preprocess by Ray tasks on two real hosts selects the same rows, in the same order, as the job's own
process on one host (the path small tables take): the same table gives the same splits on any number of
hosts. tests/integration/test_preprocess.py compares both paths on one host."""

import time
from pathlib import Path

import pandas as pd

from smray import schema as schema_mod
from smray.contracts.resource_config import JobKind
from smray.entrypoints.modes import preprocess
from smray.feature_store.backends import StoreSpec
from smray.feature_store.definition import FeatureGroupDefinition
from smray.workstation import datagen

DATA = "/opt/ml/processing/shared"


def _store(root: Path) -> None:
    schema = schema_mod.housing()
    spec = StoreSpec("local", str(root / "store"), "", "")
    group = spec.ensure_group(FeatureGroupDefinition.from_schema("housing", schema))
    spec.local().save_schema(group.name, schema)
    frame = datagen.housing_frame(3000, seed=4).assign(event_time=time.time() - 60)
    spec.write(group, frame, 200_000, True)
    spec.write(group, frame.iloc[::3].assign(PRICE=1.0, event_time=time.time() - 30), 200_000, True)


def _preprocess(make_cluster, root: Path, hosts: int, out: str, *args: str) -> None:
    command = ["preprocess", "--store", f"{DATA}/store", "--output", f"{DATA}/{out}/splits", *args]
    command += ["--transform-output", f"{DATA}/{out}/transform", "--report", f"{DATA}/{out}/report.json"]
    c = make_cluster(hosts, command, kind=JobKind.PROCESSING, volumes={str(root): DATA})
    assert c.local.run() == 0, c.logs()


def test_two_hosts_ray_tasks_select_what_one_host_s_process_does(make_cluster, tmp_path):
    _store(tmp_path)
    _preprocess(make_cluster, tmp_path, 2, "tasks", "--in-process-mib", "0")
    _preprocess(make_cluster, tmp_path, 1, "here")
    for name in preprocess.SPLITS:
        tasks = pd.read_parquet(tmp_path / "tasks" / "splits" / name)
        pd.testing.assert_frame_equal(tasks, pd.read_parquet(tmp_path / "here" / "splits" / name))
    assert (
        pd.concat(pd.read_parquet(tmp_path / "here" / "splits" / n) for n in preprocess.SPLITS)["PRICE"]
        == 1.0
    ).sum() == 1000
