"""The local workflow as building blocks: stage the input, run the pipeline in SageMaker local mode with
step progress, read the gate's decision, track the run, approve, deploy and invoke, and end with a report
and a summary. `smray run local` and the local scheduler (`smray schedule`) are both made of these."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smray import model_artifact, tables
from smray import schema as schema_mod
from smray.contracts.evaluate import EVALUATION_FILE
from smray.contracts.register import RESULT_FILE
from smray.errors import PlatformError, UserError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval, ModelVersion
from smray.reporting import run_report
from smray.schema import Schema
from smray.workstation import datagen, tracking
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import Endpoint, LocalEndpoints
from smray.workstation.pipeline import progress

DEFAULT_INPUT = Path("data/house_pricing.csv")
STEPS = 6  # ingest, preprocess, train, evaluate, gate, register or fail


@dataclass(frozen=True)
class Settings:
    image: str = "smray:latest"
    threshold: float = 15000.0
    processing_hosts: int = 2
    training_hosts: int = 1
    tuning_trials: int = 8
    num_round: int = 3000
    endpoint: str = ""  # default: the table's name
    schema: Schema = field(default_factory=schema_mod.housing)  # the table: its name names the
    # feature group, the model package group and the endpoint

    @property
    def endpoint_name(self) -> str:
        return self.endpoint or self.schema.name

    def parameters(self) -> dict[str, Any]:
        return {
            "ProcessingInstanceCount": self.processing_hosts,
            "TrainingInstanceCount": self.training_hosts,
            "RMSEThreshold": self.threshold,
            "TuningTrials": self.tuning_trials,
            "NumRound": self.num_round,
            "FeatureGroupName": self.schema.name,
        }


@dataclass
class Outcome:
    facts: dict[str, str] = field(default_factory=dict)  # ordered lines for the summary and the report
    ok: bool = True


@dataclass
class Result:
    execution: Any  # smray.workstation.pipeline.execute.Execution
    evaluation: dict[str, Any] | None
    version: ModelVersion | None  # registered by this run (it passed the gate)
    outcome: Outcome


def run_pipeline(home: Path, input_dir: Path, settings: Settings) -> Result:
    from smray.workstation.pipeline import execute

    require_image(settings.image)
    log_file = home / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"input {input_dir}, containers' output in {log_file}", flush=True)
    started = time.time()
    with progress.steps_to_terminal(log_file, STEPS) as output:
        execution = execute.run(
            home, home / "runs", input_dir, settings.image, settings.parameters(), settings.schema
        )
    outcome = Outcome()
    outcome.facts["execution"] = f"{execution.id} {execution.status} in {execution.seconds:.0f} s"
    evaluation = execution.read_json("evaluation", EVALUATION_FILE)
    if evaluation:
        m = evaluation["regression_metrics"]
        outcome.facts["test metrics"] = (
            f"RMSE {m['rmse']['value']:,.0f} (± {m['rmse']['standard_deviation']:,.0f}), "
            f"MAE {m['mae']['value']:,.0f}, R² {m['r2']['value']:.3f}"
        )
    version = _gate(execution, settings.threshold, home, outcome, output.last_failure)
    _track(home, execution, started, evaluation, outcome)
    return Result(execution, evaluation, version, outcome)


def decide(
    home: Path, version: ModelVersion, status: Approval, reason: str, outcome: Outcome
) -> ModelVersion:
    decided = LocalRegistry(home / "registry").set_status(version.group, version.version, status, reason)
    outcome.facts["approval"] = f"{decided.group}/{decided.version} {decided.status.value}: {reason}"
    return decided


def deploy_and_invoke(
    home: Path, name: str, version: ModelVersion, input_dir: Path, outcome: Outcome
) -> Endpoint:
    endpoint = LocalEndpoints(home).deploy(name, version)
    outcome.facts["endpoint"] = f"{endpoint.name} at {endpoint.url} serving {endpoint.model}"
    outcome.facts["invoke"] = _invoke_sample(endpoint, input_dir, version)
    return endpoint


def finish(result: Result, title: str) -> int:
    """Writes the report, prints the summary; the exit code of the run."""
    execution = result.execution
    steps = {s.name: (s.status, s.seconds) for s in execution.steps}
    report = run_report.write(
        execution.folder,
        execution.definition,
        steps,
        result.outcome.facts,
        result.evaluation,
        f"{title} {execution.id}",
    )
    print(f"\n=== {title}: summary ===")
    for s in execution.steps:
        print(f"  {s.name:<22} {s.status:<10} {s.seconds:6.0f} s")
    for key, value in result.outcome.facts.items():
        print(f"  {key:<14} {value}")
    print(f"  {'report':<14} {report}")
    print("result: OK" if result.outcome.ok else "result: FAILED", flush=True)
    return 0 if result.outcome.ok else 1


def require_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        raise UserError(f"image {image} is not on the local Docker engine: build it with ./build.sh")


def stage_input(home: Path, source: Path | None = None, generate: int | None = None) -> Path:
    """The run's raw input as a folder under <home>/inputs/: the same input is staged once."""
    if generate:
        folder = home / "inputs" / f"generated-{generate}"
        if not folder.is_dir():
            datagen.generate(folder, rows=generate, files=max(1, generate // 250_000), fmt="parquet", seed=42)
        return folder
    source = source or DEFAULT_INPUT
    if not source.exists():
        raise UserError(f"input {source} does not exist (the example table ships as {DEFAULT_INPUT})")
    # Each file keeps its path relative to the input: year=2024/part-0.csv and year=2025/part-0.csv are
    # two files (ingest's default record ids are built from that path too).
    if source.is_dir():
        root, files = source, tables.list_files(source)
    elif source.suffix.lower() in tables.SUFFIXES:
        root, files = source.parent, [source]
    else:
        raise UserError(f"input {source} is not a .csv or .parquet file")
    relative = [f.relative_to(root) for f in files]
    digest = hashlib.sha256()
    for rel in relative:
        content = (root / rel).read_bytes()
        digest.update(f"{rel.as_posix()}\0{len(content)}\0".encode() + content)
    folder = home / "inputs" / digest.hexdigest()[:16]
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for rel in relative:
            (partial / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / rel, partial / rel)
        partial.rename(folder)
    return folder


def _gate(
    execution: Any, threshold: float, home: Path, outcome: Outcome, job_failure: str
) -> ModelVersion | None:
    registered = execution.step("RegisterTrainedModel")
    failed = execution.step("RMSEFail")
    if registered and registered.status == "Succeeded":
        record = execution.read_json("registered", RESULT_FILE)
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
        # The job's own reason, where it wrote one; local mode's is only that docker-compose exited.
        where = f"step {broken.name} failed: {job_failure or broken.failure}" if broken else execution.failure
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
    except (UserError, PlatformError) as exc:  # the run itself stands; the summary says what was not tracked
        outcome.facts["tracking"] = f"FAILED: {exc}"
        outcome.ok = False
        return
    outcome.facts["tracking"] = f"{home / tracking.FILE}" + (
        f", MLflow run {mlflow_run}" if mlflow_run else ""
    )


def _invoke_sample(endpoint: Endpoint, input_dir: Path, version: ModelVersion, rows: int = 3) -> str:
    first = tables.list_files(input_dir)[0]
    frame = tables.read(first).head(rows)
    model = model_artifact.load(Path(version.artifact))
    body = frame[model.features].to_csv(index=False).encode()
    answer = Connection(endpoint.url).invoke(body, "text/csv")
    if answer.status != 200:
        raise UserError(f"the endpoint answered {answer.status}: {answer.body[:200]!r}")
    predicted = [float(v) for v in answer.body.split()]
    target = model.transform.schema.target
    actual = frame[target].astype(float)
    pairs = ", ".join(f"{p:,.0f} (actual {a:,.0f})" for p, a in zip(predicted, actual, strict=True))
    return f"{rows} rows of the input: {pairs}"
