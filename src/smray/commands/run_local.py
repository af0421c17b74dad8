"""`smray run local`: the whole workflow on this machine, with no AWS account.

ingest -> preprocess -> train with tuning -> evaluate -> gate -> register (the SageMaker Pipeline, in
SageMaker local mode on the local Docker engine), then approve -> deploy -> invoke, a summary and an
HTML report. Everything lives under SMRAY_HOME (default ~/.smray): the feature store and the registry
persist between runs (a second run re-ingests nothing it already has); each execution writes its own
folder under runs/.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from smray import datagen, model_artifact, paths, tracking
from smray.commands import progress
from smray.endpoints.local import Endpoint, LocalEndpoints
from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval, ModelVersion
from smray.reporting import run_report
from smray.serving.client import Connection

DEFAULT_INPUT = Path("data/house_pricing.csv")
STEPS = 6  # ingest, preprocess, train, evaluate, gate, register or fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("local", help="the whole workflow locally (SageMaker local mode)", description=__doc__)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, help=f"a CSV/Parquet file or folder (default: {DEFAULT_INPUT})")
    source.add_argument("--generate", type=int, metavar="ROWS", help="use ROWS synthetic houses instead")
    p.add_argument("--image", default="smray:latest", help="the smray image (default: smray:latest)")
    p.add_argument("--threshold", type=float, default=15000.0, help="RMSE gate (default: 15000)")
    p.add_argument(
        "--processing-hosts", type=int, default=2, help="hosts of ingest and preprocess (default: 2)"
    )
    p.add_argument("--training-hosts", type=int, default=1, help="hosts of the training job (default: 1)")
    p.add_argument("--tuning-trials", type=int, default=8, help="Ray Tune trials (default: 8)")
    p.add_argument(
        "--num-round", type=int, default=3000, help="boosting rounds, early stopping on (default: 3000)"
    )
    p.add_argument("--endpoint", default="housing", help="local endpoint to deploy to (default: housing)")
    p.add_argument("--no-approve", action="store_true", help="register only; leave approval to a person")
    p.add_argument("--no-deploy", action="store_true", help="stop after registration (and approval)")
    p.set_defaults(func=run)


@dataclass
class Outcome:
    facts: dict[str, str] = field(default_factory=dict)  # ordered lines for the summary and the report
    ok: bool = True


def run(args: argparse.Namespace) -> int:
    from smray.pipeline import execute

    home = paths.home()
    _require_image(args.image)
    input_dir = _stage_input(args, home)
    parameters = {
        "ProcessingInstanceCount": args.processing_hosts,
        "TrainingInstanceCount": args.training_hosts,
        "RMSEThreshold": args.threshold,
        "TuningTrials": args.tuning_trials,
        "NumRound": args.num_round,
    }
    log_file = home / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"smray run local: input {input_dir}, containers' output in {log_file}")
    started = time.time()
    with progress.steps_to_terminal(log_file, STEPS):
        execution = execute.run(home, home / "runs", input_dir, args.image, parameters)
    outcome = Outcome()
    outcome.facts["execution"] = f"{execution.id} {execution.status} in {execution.seconds:.0f} s"
    evaluation = execution.read_json("evaluation", "evaluation.json")
    if evaluation:
        m = evaluation["regression_metrics"]
        outcome.facts["test metrics"] = (
            f"RMSE {m['rmse']['value']:,.0f} (± {m['rmse']['standard_deviation']:,.0f}), "
            f"MAE {m['mae']['value']:,.0f}, R² {m['r2']['value']:.3f}"
        )
    version = _gate(execution, args.threshold, home, outcome)
    _track(home, execution, started, evaluation, outcome)
    if version and not args.no_approve:
        version = LocalRegistry(home / "registry").set_status(
            version.group, version.version, Approval.APPROVED, "approved by smray run local: passed the gate"
        )
        outcome.facts["approval"] = f"{version.group}/{version.version} {version.status.value}"
    if version and version.status is Approval.APPROVED and not args.no_deploy:
        endpoint = LocalEndpoints(home).deploy(args.endpoint, version)
        outcome.facts["endpoint"] = f"{endpoint.name} at {endpoint.url} serving {endpoint.model}"
        outcome.facts["invoke"] = _invoke_sample(endpoint, input_dir, version)
    steps = {s.name: (s.status, s.seconds) for s in execution.steps}
    report = run_report.write(
        execution.folder, execution.definition, steps, outcome.facts, evaluation, f"smray run {execution.id}"
    )
    _summary(execution, outcome, report)
    return 0 if outcome.ok else 1


def _require_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        raise UserError(f"image {image} is not on the local Docker engine: build it with ./build.sh")


def _stage_input(args: argparse.Namespace, home: Path) -> Path:
    """The run's raw input as a folder under <home>/inputs/<digest>: the same input is staged once."""
    if args.generate:
        folder = home / "inputs" / f"generated-{args.generate}"
        if not folder.is_dir():
            datagen.generate(
                folder, rows=args.generate, files=max(1, args.generate // 250_000), fmt="parquet", seed=42
            )
        return folder
    source = args.input or DEFAULT_INPUT
    if not source.exists():
        raise UserError(f"input {source} does not exist (the example table ships as {DEFAULT_INPUT})")
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    files = [f for f in files if f.is_file() and f.suffix.lower() in (".csv", ".parquet")]
    if not files:
        raise UserError(f"no .csv or .parquet files in {source}")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + f.read_bytes())
    folder = home / "inputs" / digest.hexdigest()[:16]
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for f in files:
            shutil.copy(f, partial / f.name)
        partial.rename(folder)
    return folder


def _gate(execution: Any, threshold: float, home: Path, outcome: Outcome) -> ModelVersion | None:
    registered = execution.step("RegisterTrainedModel")
    failed = execution.step("RMSEFail")
    if registered and registered.status == "Succeeded":
        record = execution.read_json("registered", "registered.json")
        version = LocalRegistry(home / "registry").describe(record["group"], record["version"])
        outcome.facts["gate"] = (
            f"passed (RMSE <= {threshold:,.0f}): registered {version.group}/{version.version}"
        )
        return version
    outcome.ok = False
    if failed:
        outcome.facts["gate"] = f"FAILED: {failed.failure or execution.failure}"
    else:
        broken = next((s for s in execution.steps if s.status == "Failed"), None)
        where = f"step {broken.name} failed: {broken.failure}" if broken else execution.failure
        outcome.facts["failure"] = where
    return None


def _track(home: Path, execution: Any, started: float, evaluation: dict | None, outcome: Outcome) -> None:
    metrics = {f"test_{k}": v["value"] for k, v in (evaluation or {}).get("regression_metrics", {}).items()}
    params = {k: str(v) for k, v in execution.parameters.items() if not str(v).startswith("file://")}
    model_file = execution.folder / "model" / model_artifact.ARCHIVE
    if model_file.is_file():
        meta = model_artifact.load(model_file).metadata
        params |= {f"hp_{k}": str(v) for k, v in meta.get("hyperparameters", {}).items()}
        metrics |= {
            k: float(v) for k, v in meta.items() if k.startswith("validation_") and isinstance(v, int | float)
        }
    try:
        mlflow_run = tracking.record(
            home, tracking.Run(execution.id, started, execution.status, params, metrics)
        )
    except UserError as exc:  # the run itself stands; the summary says what was not tracked
        outcome.facts["tracking"] = f"FAILED: {exc}"
        outcome.ok = False
        return
    outcome.facts["tracking"] = f"{home / tracking.FILE}" + (
        f", MLflow run {mlflow_run}" if mlflow_run else ""
    )


def _invoke_sample(endpoint: Endpoint, input_dir: Path, version: ModelVersion, rows: int = 3) -> str:
    first = sorted(p for p in input_dir.iterdir() if p.suffix in (".csv", ".parquet"))[0]
    frame = pd.read_csv(first, nrows=rows) if first.suffix == ".csv" else pd.read_parquet(first).head(rows)
    model = model_artifact.load(Path(version.artifact))
    body = frame[model.features].to_csv(index=False).encode()
    answer = Connection(endpoint.url).invoke(body, "text/csv")
    if answer.status != 200:
        raise UserError(f"the endpoint answered {answer.status}: {answer.body[:200]!r}")
    predicted = [float(v) for v in answer.body.split()]
    target = model.transform.schema.target
    pairs = ", ".join(f"{p:,.0f} (actual {a:,.0f})" for p, a in zip(predicted, frame[target], strict=True))
    return f"{rows} rows of the input: {pairs}"


def _summary(execution: Any, outcome: Outcome, report: Path) -> None:
    print("\n=== smray run local: summary ===")
    for s in execution.steps:
        print(f"  {s.name:<22} {s.status:<10} {s.seconds:6.0f} s")
    for key, value in outcome.facts.items():
        print(f"  {key:<14} {value}")
    print(f"  {'report':<14} {report}")
    print("result: OK" if outcome.ok else "result: FAILED")
