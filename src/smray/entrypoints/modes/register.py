"""`register`: a trained model and its evaluation -> a new version in the local model registry.

The local pipeline's stand-in for SageMaker's RegisterModel step (which local mode cannot run): the
registry folder is mounted into the job, the version starts as PendingManualApproval, and the new
version's record is written to --output as `registered.json` for the run's summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from smray.contracts import register as contract
from smray.contracts.evaluate import EVALUATION_FILE
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError
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
    p.add_argument("--output", type=Path, default=proc / contract.OUTPUT, help=f"where {RESULT_FILE} goes")
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    evaluation_file = opts.evaluation / EVALUATION_FILE
    try:
        metrics = json.loads(evaluation_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the evaluation {evaluation_file}: {exc}") from exc
    model = opts.model
    if model.is_dir() and (model / "model.tar.gz").is_file():
        model = model / "model.tar.gz"
    record = LocalRegistry(opts.registry).register(
        opts.group, model, opts.image, metrics, execution=opts.execution
    )
    opts.output.mkdir(parents=True, exist_ok=True)
    (opts.output / RESULT_FILE).write_text(json.dumps(dataclasses.asdict(record), indent=2))
    print(f"register: {record.group} version {record.version} ({record.status.value})", flush=True)
