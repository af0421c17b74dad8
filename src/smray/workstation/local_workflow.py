"""The local workflow as building blocks: stage the input, run the pipeline in SageMaker local mode with
step progress, read the gate's decision, track the run, deploy, approve and invoke, and end with a report
and a summary. `smray run local` and the local scheduler (`smray schedule`) are both made of these."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from smray import durable, gate, model_artifact, tables, transform, workflow
from smray import schema as schema_mod
from smray.contracts.evaluate import EVALUATION_FILE
from smray.contracts.register import RESULT_FILE
from smray.errors import PlatformError, UserError
from smray.gate import GateRule
from smray.locks import exclusive
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval, ModelVersion
from smray.reporting import numbers, run_report
from smray.schema import Schema, Task
from smray.workstation import datagen, tracking, validation
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import Endpoint, LocalEndpoints
from smray.workstation.pipeline import FAIL_STEP, progress

DEFAULT_INPUT = Path("data/house_pricing.csv")
STEPS = 6  # ingest, preprocess, train, evaluate, gate, register or fail
# The summary's test metrics, by task: each with its bootstrap deviation
SUMMARY_METRICS = {
    Task.REGRESSION: ("rmse", "mae", "r2"),
    Task.BINARY: ("accuracy", "auc", "f1", "logloss"),
    Task.MULTICLASS: ("accuracy", "weighted_f1", "logloss"),
}


@dataclass(frozen=True)
class Settings:
    image: str = "smray:latest"
    threshold: float | None = None  # the gate's threshold; None: the gate's own (`rule`)
    processing_hosts: int = workflow.default("ProcessingInstanceCount")
    training_hosts: int = workflow.default("TrainingInstanceCount")
    tuning_trials: int = workflow.default("TuningTrials")
    num_round: int = workflow.default("NumRound")
    endpoint: str = ""  # default: the table's name
    schema: Schema = field(default_factory=schema_mod.housing)  # the table: its name names the
    # feature group, the model package group and the endpoint
    gate: str = workflow.GATE.default  # `accuracy >= 0.9`; "": the table's task's default gate

    @property
    def endpoint_name(self) -> str:
        return self.endpoint or self.schema.name

    @property
    def rule(self) -> GateRule:
        """The gate, on the table's task: `gate` with `threshold` as its number where one is given."""
        return workflow.gate_rule(self.schema.task, self.gate, self.threshold)

    def parameters(self) -> dict[str, Any]:
        return {p.name: getattr(self, p.field) for p in workflow.PARAMETERS} | {
            "Threshold": self.rule.threshold,
            "FeatureGroupName": self.schema.name,
        }


def checked(chosen: Settings, names: Mapping[str, str], together: bool = True) -> Settings:
    """`chosen` with its gate resolved on the table's task (its threshold set), every setting checked;
    `names` maps each field of validation.CHECKED and `gate` to what the user calls it. `together`: the
    gate and the threshold came together (one command line), so different numbers in them contradict;
    else the threshold replaces the gate's number (the scheduler's input, an execution's Threshold)."""
    if chosen.gate != "":
        validation.text(chosen.gate, names["gate"])
    if together:
        workflow.refuse_two_thresholds(
            chosen.schema.task, chosen.gate, chosen.threshold, (names["gate"], names["threshold"])
        )
    # A threshold that the gate gave is named by the gate in a refusal: the user wrote no threshold.
    taken = names["threshold"] if chosen.threshold is not None else f"the threshold of {names['gate']}"
    threshold = chosen.rule.threshold
    return validation.settings(replace(chosen, threshold=threshold), {**names, "threshold": taken})


@dataclass(frozen=True)
class Gate:
    """The quality gate's decision: the version registered when the model passed it; else why not (the
    test metric on the wrong side of the threshold, or the step that failed before the gate and its
    reason). `value`: the test metric the gate read, where the evaluation holds it."""

    rule: GateRule
    version: ModelVersion | None
    refused: str = ""  # the gate itself said no: the Fail step's message
    failed: str = ""  # a step failed before the gate could decide
    value: float | None = None

    @property
    def verdict(self) -> str:
        """In words: what the summary says, and the scheduler records for a run it did not deploy."""
        rule, name = self.rule, workflow.label(self.rule.metric)
        if self.version is not None:
            read = f"{name} {numbers.significant(self.value)}" if self.value is not None else name
            bound = f"{rule.operator} {numbers.significant(rule.threshold)}"
            return f"passed ({read} {bound}): registered {self.version.group}/{self.version.version}"
        if self.refused and self.value is not None:
            side = "below" if rule.higher_is_better else "above"
            value, threshold = numbers.significant(self.value), numbers.significant(rule.threshold)
            return f"refused: test {name} {value} is {side} {threshold}"
        return f"refused: {self.refused}" if self.refused else self.failed


@dataclass(frozen=True)
class Tracking:
    file: Path
    mlflow_run: str | None = None
    error: str = ""  # MLflow could not record the run; the run itself stands


@dataclass(frozen=True)
class Decision:
    version: ModelVersion  # as decided: its status and reason
    reason: str


@dataclass(frozen=True)
class Deployment:
    endpoint: Endpoint
    # (the endpoint's CSV answer, the actual target) for the input's first rows: a number (regression),
    # the positive label's probability (binary) or a label (multiclass); the actual None where missing
    sample: list[tuple[float | str, float | str | None]]


@dataclass
class Result:
    """One local run, as fields: only `summary()` turns it into words."""

    execution: Any  # smray.workstation.pipeline.execute.Execution
    evaluation: dict[str, Any] | None
    gate: Gate
    model: model_artifact.Model | None  # the run's trained model, opened once
    tracking: Tracking | None = None
    approval: Decision | None = None
    deployment: Deployment | None = None
    schedule: str = ""  # the scheduler's decision, when it ran this

    @property
    def version(self) -> ModelVersion | None:
        """Registered by this run (it passed the gate)."""
        return self.gate.version

    @property
    def ok(self) -> bool:
        return self.gate.version is not None and not (self.tracking and self.tracking.error)

    def summary(self) -> dict[str, str]:
        """Ordered lines for the terminal and the report."""
        lines = {
            "execution": f"{self.execution.id} {self.execution.status} in {self.execution.seconds:.0f} s"
        }
        if self.evaluation:
            lines["test metrics"] = metrics_line(self.evaluation, self.gate.rule.task)
        gate = self.gate
        lines["gate" if gate.version is not None or gate.refused else "failure"] = gate.verdict
        if self.tracking:
            t = self.tracking
            lines["tracking"] = (
                f"FAILED: {t.error}"
                if t.error
                else f"{t.file}" + (f", MLflow run {t.mlflow_run}" if t.mlflow_run else "")
            )
        if self.approval:
            v = self.approval.version
            lines["approval"] = f"{v.group}/{v.version} {v.status.value}: {self.approval.reason}"
        if self.deployment and self.model:
            e = self.deployment.endpoint
            lines["endpoint"] = f"{e.name} at {e.url} serving {e.model}"
            pairs = ", ".join(
                f"{_answer(p, self.model)} (actual {_actual(a)})" for p, a in self.deployment.sample
            )
            lines["invoke"] = f"{len(self.deployment.sample)} rows of the input: {pairs}"
        if self.schedule:
            lines["schedule"] = self.schedule
        return lines


def metrics_line(evaluation: dict[str, Any], task: Task) -> str:
    """The summary's test metrics: the task's headline ones, each with its bootstrap deviation."""
    section = evaluation.get(gate.SECTIONS[task], {})
    parts = []
    for metric in SUMMARY_METRICS[task]:
        found = section.get(metric) or {}
        deviation = found.get("standard_deviation")
        value, spread = numbers.with_deviation(found.get("value"), deviation)
        parts.append(
            f"{workflow.label(metric)} {value}" + (f" (± {spread})" if deviation is not None else "")
        )
    return ", ".join(parts)


def _answer(predicted: float | str, model: model_artifact.Model) -> str:
    if isinstance(predicted, str):
        return predicted
    if model.task is Task.BINARY:
        return f"P({model.labels[-1]}) {numbers.significant(predicted)}"
    return numbers.significant(predicted)


def _actual(actual: float | str | None) -> str:
    if actual is None:
        return "missing"
    return actual if isinstance(actual, str) else numbers.significant(actual)


def run_pipeline(home: Path, input_dir: Path, settings: Settings) -> Result:
    from smray.workstation.pipeline import execute

    require_image(settings.image)
    log_file = home / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"input {input_dir}, containers' output in {log_file}", flush=True)
    started = time.time()
    with progress.steps_to_terminal(log_file, STEPS) as output:
        execution = execute.run(
            home,
            home / "runs",
            input_dir,
            settings.image,
            settings.parameters(),
            settings.schema,
            max(settings.processing_hosts, settings.training_hosts),
            settings.rule,
        )
    archive = execution.folder / "model" / model_artifact.ARCHIVE
    evaluation = execution.read_json("evaluation", EVALUATION_FILE)
    result = Result(
        execution,
        evaluation,
        _gate(execution, evaluation, settings.rule, home, output.last_failure),
        model_artifact.load(archive) if archive.is_file() else None,
    )
    result.tracking = _track(home, result, started)
    return result


def decide(home: Path, result: Result, status: Approval, reason: str) -> ModelVersion:
    """Approve or reject the version this run registered."""
    version = result.version
    if version is None:
        raise ValueError("only a run that passed the gate registered a version to decide on")
    decided = LocalRegistry(home / "registry").set_status(version.group, version.version, status, reason)
    result.approval = Decision(decided, reason)
    return decided


def deploy_approve_and_invoke(
    home: Path, name: str, result: Result, input_dir: Path, reason: str
) -> Endpoint:
    """Serves the version this run registered on the endpoint `name` and approves it once it serves (a
    deploy that fails or is interrupted leaves it pending), then sends it the input's first rows."""
    if result.version is None or result.model is None:
        raise ValueError("only a run that passed the gate registered a version to deploy")
    endpoint = LocalEndpoints(home).deploy(name, result.version)
    decide(home, result, Approval.APPROVED, reason)
    result.deployment = Deployment(endpoint, _invoke_sample(endpoint, input_dir, result.model))
    return endpoint


def finish(result: Result, title: str) -> int:
    """Writes the report, prints the summary; the exit code of the run."""
    execution = result.execution
    steps = {s.name: (s.status, s.seconds) for s in execution.steps}
    lines = result.summary()
    report = run_report.write(
        execution.folder, execution.definition, steps, lines, result.evaluation, f"{title} {execution.id}"
    )
    print(f"\n=== {title}: summary ===")
    for s in execution.steps:
        print(f"  {s.name:<22} {s.status:<10} {s.seconds:6.0f} s")
    for key, value in lines.items():
        print(f"  {key:<14} {value}")
    print(f"  {'report':<14} {report}")
    print("result: OK" if result.ok else "result: FAILED", flush=True)
    return 0 if result.ok else 1


def require_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        raise UserError(f"image {image} is not on the local Docker engine: build it with ./build.sh")


def input_files(source: Path | None) -> tuple[Path, list[Path]]:
    """The input's folder and its table files (the default input's when `source` is None)."""
    source = source or DEFAULT_INPUT
    if not source.exists():
        raise UserError(f"input {source} does not exist (the example table ships as {DEFAULT_INPUT})")
    if source.is_dir():
        return source, tables.list_files(source)
    if source.is_file() and source.suffix.lower() in tables.SUFFIXES:  # not a FIFO named x.csv
        return source.parent, [source]
    raise UserError(f"input {source} is not a .csv or .parquet file")


def stage_input(home: Path, source: Path | None = None, generate: int | None = None) -> Path:
    """The run's raw input as a folder under <home>/inputs/: the same input is staged once."""
    if generate:
        return _written_once(
            home / "inputs" / f"generated-{generate}",
            lambda partial: datagen.generate(
                partial, rows=generate, files=max(1, generate // 250_000), fmt="parquet", seed=42
            ),
        )
    root, files = input_files(source)
    # Each file keeps its path relative to the input: year=2024/part-0.csv and year=2025/part-0.csv are
    # two files (ingest's default record ids are built from that path too).
    relative = [f.relative_to(root) for f in files]
    digest = hashlib.sha256()
    for rel in relative:
        content = (root / rel).read_bytes()
        digest.update(f"{rel.as_posix()}\0{len(content)}\0".encode() + content)

    def copy(partial: Path) -> None:
        for rel in relative:
            (partial / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, partial / rel)  # not the input's mode: the home is private

    return _written_once(home / "inputs" / digest.hexdigest()[:16], copy)


def _written_once(folder: Path, write: Callable[[Path], object]) -> Path:
    """`folder`, written by `write(partial)` unless it exists. A folder under this name is only ever
    whole, as runs reuse it for good: `write` fills a hidden sibling, which is synced to disk and then
    renamed; one writer at a time (a second waits, then finds the folder), and a partial sibling that a
    killed writer left behind is removed."""
    with exclusive(folder.parent / ".lock"):
        if not folder.is_dir():
            partial = folder.with_name(f".{folder.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            write(partial)
            # files and subfolders, then the folder
            durable.sync_all([*sorted(partial.rglob("*"), reverse=True), partial])
            partial.rename(folder)
            durable.sync(folder.parent)
    return folder


def _gate(
    execution: Any, evaluation: dict[str, Any] | None, rule: GateRule, home: Path, job_failure: str
) -> Gate:
    try:
        value = rule.value(evaluation) if evaluation else None
    except UserError:  # the gate's own step then failed too, and says so
        value = None
    registered = execution.step("RegisterTrainedModel")
    if registered and registered.status == "Succeeded":
        record = execution.read_json("registered", RESULT_FILE)
        version = LocalRegistry(home / "registry").describe(record["group"], record["version"])
        return Gate(rule, version, value=value)
    refused = execution.step(FAIL_STEP)
    if refused:
        return Gate(rule, None, refused=refused.failure or execution.failure, value=value)
    broken = next((s for s in execution.steps if s.status == "Failed"), None)
    # The job's own reason, where it wrote one; local mode's is only that docker-compose exited.
    failed = f"step {broken.name} failed: {job_failure or broken.failure}" if broken else execution.failure
    return Gate(rule, None, failed=failed, value=value)


def _track(home: Path, result: Result, started: float) -> Tracking:
    execution = result.execution
    section = (result.evaluation or {}).get(gate.SECTIONS[result.gate.rule.task], {})
    metrics = {  # the metrics with a value; not the confusion matrix or the curves
        f"test_{k}": float(v["value"])
        for k, v in section.items()
        if isinstance(v, dict) and isinstance(v.get("value"), int | float)
    }
    params = {k: str(v) for k, v in execution.parameters.items() if not str(v).startswith("file://")}
    if result.model is not None:
        meta = result.model.metadata
        params |= {f"hp_{k}": str(v) for k, v in meta.get("hyperparameters", {}).items()}
        metrics |= {
            k: float(v) for k, v in meta.items() if k.startswith("validation_") and isinstance(v, int | float)
        }
    try:
        run = tracking.record(home, tracking.Run(execution.id, started, execution.status, params, metrics))
    except (UserError, PlatformError) as exc:  # the run itself stands; the summary says what was not tracked
        return Tracking(home / tracking.FILE, error=str(exc))
    return Tracking(home / tracking.FILE, run)


def _invoke_sample(
    endpoint: Endpoint, input_dir: Path, model: model_artifact.Model, rows: int = 3
) -> list[tuple[float | str, float | str | None]]:
    """The endpoint's CSV answers for the input's first rows, beside their actual targets."""
    first = tables.list_files(input_dir)[0]
    frame = tables.read(first).head(rows)
    body = frame[model.features].to_csv(index=False).encode()
    answer = Connection(endpoint.url).invoke(body, "text/csv", accept="text/csv")
    if answer.status != 200:
        raise UserError(f"the endpoint answered {answer.status}: {answer.body[:200]!r}")
    # a row per row: a number, or a multiclass label (quoted where it holds a comma)
    answers = [row[0] for row in csv.reader(io.StringIO(answer.body.decode())) if row]
    predicted: list[float | str] = answers if model.task is Task.MULTICLASS else [float(v) for v in answers]
    target = frame[model.transform.schema.target]
    actual: list[float | str | None] = (
        list(transform.as_text(target))
        if model.task.classification
        else [None if math.isnan(v) else v for v in pd.to_numeric(target, errors="coerce").astype(float)]
    )
    return list(zip(predicted, actual, strict=True))
