"""The workflow's modes in the real image: on one host, and on a 2-host cluster (processing and
training) where both hosts do work."""

import json
import shutil
from pathlib import Path

import pandas as pd

from smray import datagen
from smray.ray_bootstrap.resource_config import JobKind

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "house_pricing.csv"


# Every step's paths under /data, one host folder mounted in every container.
INGEST = [
    "ingest",
    "--input",
    "/data/raw",
    "--store",
    "/data/store",
    "--quarantine",
    "/data/quarantine",
    "--report",
    "/data/ingest.json",
]
PREPROCESS = [
    "preprocess",
    "--store",
    "/data/store",
    "--output",
    "/data/splits",
    "--transform-output",
    "/data/channels/transform",
    "--report",
    "/data/preprocess.json",
]
TRAIN = [
    "train",
    "--channels",
    "/data/channels",
    "--model-dir",
    "/data/model",
    "--checkpoint-dir",
    "/data/checkpoints",
]
EVALUATE = [
    "evaluate",
    "--model",
    "/data/model",
    "--test",
    "/data/splits/test",
    "--output",
    "/data/evaluation",
]


def run_job(make_cluster, hosts, command, kind, work: Path, timeout_s=400):
    c = make_cluster(hosts, command, kind=kind, volumes={str(work): "/data"})
    c.local.start()
    states = c.wait_exit(c.local.hosts, timeout_s=timeout_s)
    assert all(s["ExitCode"] == 0 for s in states.values()), c.logs()
    return c.logs(c.local.head)


def stage_channels(work: Path) -> None:
    """What SageMaker does between the steps: the splits become the training job's channels."""
    for name in ("train", "validation"):
        shutil.copytree(work / "splits" / name, work / "channels" / name)


def test_one_host_ingest_preprocess_train_evaluate(make_cluster, tmp_path):
    work = tmp_path / "work"
    (work / "raw").mkdir(parents=True)
    shutil.copy(REFERENCE, work / "raw")
    proc = JobKind.PROCESSING
    assert "ingest: 10000 rows from 1 file(s)" in run_job(make_cluster, 1, INGEST, proc, work)
    assert "preprocess: 9999 live records" in run_job(make_cluster, 1, PREPROCESS, proc, work)
    stage_channels(work)
    log = run_job(make_cluster, 1, TRAIN, JobKind.TRAINING, work)
    assert "train: xgboost" in log and "\tvalidation-rmse:" in log
    run_job(make_cluster, 1, EVALUATE, proc, work)
    result = json.loads((work / "evaluation" / "evaluation.json").read_text())
    assert result["regression_metrics"]["rmse"]["value"] < 6_000
    assert (work / "evaluation" / "report.html").exists()


def test_two_hosts_share_ingest_and_train_together(make_cluster, tmp_path):
    work = tmp_path / "work"
    datagen.generate(work / "raw", rows=20_000, files=4, fmt="parquet", seed=3)
    proc = JobKind.PROCESSING
    run_job(make_cluster, 2, INGEST, proc, work)
    report = json.loads((work / "ingest.json").read_text())
    assert len(report["hosts"]) == 2 and all(rows > 0 for rows in report["hosts"].values()), report
    assert report["written"] == 20_000

    run_job(make_cluster, 2, PREPROCESS, proc, work)
    splits = {n: len(pd.read_parquet(work / "splits" / n)) for n in ("train", "validation", "test")}
    assert sum(splits.values()) == 20_000
    stage_channels(work)

    log = run_job(make_cluster, 2, TRAIN, JobKind.TRAINING, work)
    meta = json.loads((work / "model" / "metadata.json").read_text())
    assert meta["engine"] == "ray-train x2", log
    hosts = {w["host"] for w in meta["workers"]}
    assert len(hosts) == 2 and all(w["rows"] > 0 for w in meta["workers"]), meta["workers"]
    assert meta["validation_rmse"] < 15_000
    print(f"\n2-host training: {meta['workers']}, validation rmse {meta['validation_rmse']:.0f}")
