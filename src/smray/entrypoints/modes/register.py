"""`register`: a trained model and its evaluation -> a new version in the local model registry.

The local pipeline's stand-in for SageMaker's RegisterModel step (which local mode cannot run): the
registry folder is mounted into the job, the version starts as PendingManualApproval, and the new
version's record is written to --output as `registered.json` for the run's summary. The version's
metrics are the evaluation (evaluation.json, whatever the task) and the metric of the gate it passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from smray import gate
from smray.contracts import register as contract
from smray.contracts.evaluate import EVALUATION_FILE
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError
from smray.registry import records
from smray.registry.local import LocalRegistry

RESULT_FILE = contract.RESULT_FILE


def parser() -> argparse.ArgumentParser:
    proc = processing_root()
    p = argparse.ArgumentParser(prog="smray-entrypoint register", description=__doc__)
    p.add_argument("--model", type=Path, default=proc / contract.MODEL, help="model.tar.gz or its folder")
    p.add_argument(
        "--evaluation", type=Path, default=proc / contract.EVALUATION, help="folder with evaluation.json"
    )
    p.add_argument(
        "--registry", type=Path, default=proc / contract.REGISTRY, help="the local registry's folder"
    )
    p.add_argument("--group", default="housing", help="model package group")
    p.add_argument("--image", required=True, help="the image that serves the model")
    p.add_argument("--execution", default="", help="the pipeline execution that produced the model")
    p.add_argument("--gate-metric", default="", help="the metric of the gate the model passed: accuracy")
    p.add_argument("--output", type=Path, default=proc / contract.OUTPUT, help=f"where {RESULT_FILE} goes")
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    evaluation_file = opts.evaluation / EVALUATION_FILE
    try:
        metrics = json.loads(evaluation_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the evaluation {evaluation_file}: {exc}") from exc
    if opts.gate_metric:
        task = records.task_of(metrics)
        if opts.gate_metric not in gate.METRICS[task]:
            raise UserError(f"--gate-metric {opts.gate_metric!r} is not a metric of a {task.value} model")
        metrics[records.GATE_METRIC] = opts.gate_metric
    model = opts.model
    if model.is_dir() and (model / "model.tar.gz").is_file():
        model = model / "model.tar.gz"
    record = LocalRegistry(opts.registry).register(
        opts.group, model, opts.image, metrics, execution=opts.execution
    )
    opts.output.mkdir(parents=True, exist_ok=True)
    (opts.output / RESULT_FILE).write_text(json.dumps(dataclasses.asdict(record), indent=2))
    print(f"register: {record.group} version {record.version} ({record.status.value})", flush=True)
