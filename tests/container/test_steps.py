"""The workflow's modes in the real image, job by job on one host, with the default hyper-parameters
(the model quality on the reference table). Multi-host steps run in test_pipeline_local.py."""

import json
import shutil
from pathlib import Path

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
