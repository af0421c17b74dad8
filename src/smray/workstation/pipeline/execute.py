"""One execution of the pipeline in SageMaker local mode, and what it did: each step's status, duration
and failure reason, and the files its steps wrote under the execution's own folder."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smray.contracts.jobs import SCHEMA_FILE
from smray.gate import GateRule
from smray.schema import Schema
from smray.workstation.pipeline import FAIL_STEP, definition, local_mode

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    status: str  # Succeeded, Failed, Executing, Starting... as local mode reports them
    seconds: float
    failure: str = ""


@dataclass
class Execution:
    id: str
    status: str
    folder: Path  # <OutputUrl>/<execution id>: every step's outputs
    seconds: float
    steps: list[StepResult] = field(default_factory=list)
    failure: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)  # the pipeline as SageMaker reads it

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def read_json(self, *parts: str) -> dict[str, Any] | None:
        path = self.folder.joinpath(*parts)
        return json.loads(path.read_text()) if path.is_file() else None


def run(
    home: Path,
    runs: Path,
    input_dir: Path,
    image: str,
    parameters: dict[str, Any],
    schema: Schema,
    hosts: int,
    gate: GateRule,
) -> Execution:
    """Runs the whole pipeline once on the table `schema` declares, gated by `gate` (on the schema's
    task); `parameters` overrides pipeline parameters by name; `hosts`: the most hosts any of its jobs
    has."""
    local_mode.prepare_environment(home)
    defaults = {
        "InputDataUrl": input_dir.resolve().as_uri(),
        "OutputUrl": runs.resolve().as_uri(),
        "FeatureStoreUrl": (home / "feature-store").resolve().as_uri(),
        "RegistryUrl": (home / "registry").resolve().as_uri(),
        "SchemaUrl": _schema_folder(home, schema).resolve().as_uri(),
    }
    for key in ("feature-store", "registry"):
        (home / key).mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    target = definition.Target(
        name="local",
        image=image,
        role="arn:aws:iam::000000000000:role/smray-local",
        ray_token=secrets.token_urlsafe(24),
        processing_instance_type="local",
        training_instance_type="local",
        model_package_group=schema.name,
        defaults=defaults,
        gate=gate,
    )
    with local_mode.config_validated_once():
        session = local_mode.session(local_mode.shm_size(hosts))
        pipeline = definition.build(target, session)
        pipeline.create(role_arn=target.role)
        started = time.monotonic()
        with local_mode.file_property_files(), local_mode.job_containers_removed():
            execution = pipeline.start(parameters=parameters)
        seconds = time.monotonic() - started
        pipeline_definition = json.loads(pipeline.definition())
        described = execution.describe()
        steps = [_step(s) for s in execution.list_steps()["PipelineExecutionSteps"]]
    return Execution(
        id=described["PipelineExecutionArn"],
        status=described["PipelineExecutionStatus"],
        folder=runs / described["PipelineExecutionArn"],
        seconds=seconds,
        steps=sorted(steps, key=lambda s: _order(s.name)),
        failure=described.get("FailureReason", ""),
        parameters={**defaults, **parameters},
        definition=pipeline_definition,
    )


def _schema_folder(home: Path, schema: Schema) -> Path:
    """A folder holding only the schema (local mode mounts a file input's whole folder)."""
    text = schema.dumps()
    folder = home / "schemas" / f"{schema.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SCHEMA_FILE).write_text(text)
    return folder


STEP_ORDER = (
    "FeatureStoreIngestion",
    "PreprocessData",
    "TrainWithTuning",
    "HPTuning",
    "EvaluateModel",
    "CheckEvaluation",
    "RegisterTrainedModel",
    FAIL_STEP,
)


def _order(name: str) -> int:
    return STEP_ORDER.index(name) if name in STEP_ORDER else len(STEP_ORDER)


def _step(raw: dict[str, Any]) -> StepResult:
    start, end = raw.get("StartTime"), raw.get("EndTime")
    seconds = (end - start) if isinstance(start, int | float) and isinstance(end, int | float) else 0.0
    return StepResult(
        raw["StepName"], raw.get("StepStatus", "?"), float(seconds), raw.get("FailureReason", "")
    )
