"""A SageMaker Pipeline definition executed with SageMaker's own rules, for tests: the JSON that
`smray run aws` upserts, step by step, each job run by SageMaker local mode on the real image against
S3 and SageMaker stand-ins (tests.support.aws_standins).

What it reproduces of SageMaker (/work/shared/notes/aws-semantics.md): parameters, execution variables,
`Get` property references, `Std:Join`, `Std:JsonGet` over a step's property file read from S3; a job's
S3 input prefix that matches no object fails the job (local mode alone would run it with an empty folder);
training output at `<S3OutputPath>/<TrainingJobName>/output/model.tar.gz`; tuning trials as training jobs
named `<tuning job>-NNN-<8 hex>`, their objective read from the log by the metric definitions' regexes
(its last value, as SageMaker's tuner takes it), `TrainingJobSummaries` best first; Condition and Fail;
RegisterModel into SageMaker's model registry (moto), refused when its model data does not exist; step
caching by the documented cache keys, across the executions of one `Pipeline`.

What it changes, and only here: instance types become `local`, and each job's environment gains the
stand-ins' endpoints and credentials (on AWS, a job gets its role's credentials and the real endpoints).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.aws_standins import Endpoints

COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # Compose's terminal colours around each container's name
STEP_REF = re.compile(r'"Get": "Steps\.([A-Za-z0-9_-]+)')
# The cache key's attributes of each step type (AWS docs: "Default cache key attributes by pipeline
# step type").
CACHE_KEYS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition"),
    "Training": ("AlgorithmSpecification", "HyperParameters", "InputDataConfig"),
}
TUNING_DEFINITION_KEYS = ("AlgorithmSpecification", "InputDataConfig", "StaticHyperParameters")


class StepFailed(Exception):
    """A step's failure reason, as DescribePipelineExecution's steps show it."""


class JobFailed(StepFailed):
    """A job's FailureReason, as Describe*Job shows it; `log`: what the job logged."""

    def __init__(self, reason: str, log: str = "") -> None:
        super().__init__(reason)
        self.log = log


@dataclass
class StepRun:
    name: str
    status: str  # Succeeded, Failed
    reason: str = ""
    cached: bool = False
    seconds: float = 0.0
    properties: dict[str, Any] = field(default_factory=dict)
    log: str = ""


@dataclass
class Execution:
    id: str
    status: str = "Executing"
    failure: str = ""
    steps: dict[str, StepRun] = field(default_factory=dict)

    def step(self, name: str) -> StepRun:
        return self.steps[name]


class Pipeline:
    """One pipeline definition; `start()` runs an execution to its end. Cached steps are kept across the
    executions of this object, as SageMaker keeps them across a pipeline's executions."""

    def __init__(self, definition: dict[str, Any], endpoints: Endpoints, seed: int = 0) -> None:
        self.definition = definition
        self.endpoints = endpoints
        self.random = random.Random(seed)
        self.cache: dict[str, dict[str, Any]] = {}  # cache key -> properties of the step that ran
        self.steps = _all_steps(definition["Steps"])

    def start(self, parameters: dict[str, Any] | None = None) -> Execution:
        values = {p["Name"]: p.get("DefaultValue") for p in self.definition["Parameters"]}
        unknown = set(parameters or {}) - set(values)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        values |= parameters or {}
        execution = Execution(id=secrets.token_hex(6))
        run = _Run(self, execution, values)
        try:
            for step in _in_order(self.definition["Steps"]):
                run.step(step)
            execution.status = "Succeeded"
        except StepFailed as failure:
            execution.status, execution.failure = "Failed", str(failure)
        return execution


def _all_steps(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for step in steps:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            found |= _all_steps(step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"])
    return found


def _in_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The top-level steps in an order that honours DependsOn and every property reference."""
    names = {s["Name"] for s in steps}
    needs = {
        s["Name"]: ({*s.get("DependsOn", []), *STEP_REF.findall(json.dumps(s))} & names) - {s["Name"]}
        for s in steps
    }
    done: list[dict[str, Any]] = []
    while len(done) < len(steps):
        ready = [s for s in steps if s not in done and needs[s["Name"]] <= {d["Name"] for d in done}]
        if not ready:
            raise ValueError("the steps' dependencies form a cycle")
        done.append(ready[0])
    return done


class _Run:
    def __init__(self, pipeline: Pipeline, execution: Execution, parameters: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.execution = execution
        self.parameters = parameters

    # --- expressions ------------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(_text(self.resolve(v)) for v in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            return self._json_get(value["Std:JsonGet"])
        return {k: self.resolve(v) for k, v in value.items()}

    def _get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            return self.parameters[rest]
        if head == "Execution":
            return {"PipelineExecutionId": self.execution.id, "PipelineExecutionArn": self.execution.id}[rest]
        name, _, rest = rest.partition(".")
        run = self.execution.steps.get(name)
        if run is None or run.status != "Succeeded":
            raise StepFailed(f"property {path} of step {name}, which has not succeeded")
        return _walk(run.properties, rest)

    def _json_get(self, spec: dict[str, Any]) -> Any:
        ref = spec["PropertyFile"]["Get"]  # Steps.<step>.PropertyFiles.<name>
        _, step_name, _, file_name = ref.split(".")
        declared = next(
            f for f in self.pipeline.steps[step_name]["PropertyFiles"] if f["PropertyFileName"] == file_name
        )
        outputs = self._get(f"Steps.{step_name}.ProcessingOutputConfig.Outputs")
        base = next(o for o in outputs if o["OutputName"] == declared["OutputName"])["S3Output"]["S3Uri"]
        uri = f"{base.rstrip('/')}/{declared['FilePath']}"
        try:
            document = json.loads(self._read(uri))
            return _walk(document, spec["Path"])
        except (KeyError, IndexError, ValueError) as exc:
            raise StepFailed(f"JsonGet {spec['Path']} in {uri}: {exc}") from exc

    # --- S3 -----------------------------------------------------------------------------------------
    def _read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        s3 = self.pipeline.endpoints.client("s3")
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey as exc:
            raise StepFailed(f"no object at {uri}") from exc

    # --- steps --------------------------------------------------------------------------------------
    def step(self, step: dict[str, Any]) -> None:
        name, kind = step["Name"], step["Type"]
        run = StepRun(name, "Executing")
        self.execution.steps[name] = run
        started = time.monotonic()
        try:
            arguments = self.resolve(step["Arguments"]) if kind != "Condition" else step["Arguments"]
            key = self._cache_key(step, arguments)
            if key in self.pipeline.cache:
                run.properties, run.cached = copy.deepcopy(self.pipeline.cache[key]), True
            else:
                run.properties = self._execute(kind, name, arguments, run)
                if key:
                    self.pipeline.cache[key] = copy.deepcopy(run.properties)
            run.status = "Succeeded"
        except StepFailed as failure:
            run.status, run.reason = "Failed", str(failure)
            raise StepFailed(f"step {name} failed: {failure}") from failure
        finally:
            run.seconds = time.monotonic() - started
            cached = " (cached)" if run.cached else ""
            print(
                f"[pipeline {self.execution.id}] {name} {run.status}{cached} {run.seconds:.0f} s",
                file=sys.__stderr__,
            )

    def _cache_key(self, step: dict[str, Any], arguments: dict[str, Any]) -> str:
        if not step.get("CacheConfig", {}).get("Enabled") or step["Type"] not in CACHE_KEYS:
            return ""
        picked = {k: arguments.get(k) for k in CACHE_KEYS[step["Type"]]}
        if step["Type"] == "Tuning":
            definition = picked.pop("TrainingJobDefinition")
            picked |= {k: definition.get(k) for k in TUNING_DEFINITION_KEYS}
        return step["Name"] + json.dumps(picked, sort_keys=True)

    def _execute(self, kind: str, name: str, arguments: dict[str, Any], run: StepRun) -> dict[str, Any]:
        if kind == "Processing":
            return self._processing(name, arguments, run)
        if kind == "Training":
            return self._training(_job_name(name), arguments, run)
        if kind == "Tuning":
            return self._tuning(name, arguments, run)
        if kind == "Condition":
            return self._condition(arguments)
        if kind == "Fail":
            raise StepFailed(_text(arguments.get("ErrorMessage", "")))
        if kind == "RegisterModel":
            return self._register(arguments)
        raise StepFailed(f"step type {kind} is not reproduced by this harness")

    def _processing(self, name: str, request: dict[str, Any], run: StepRun) -> dict[str, Any]:
        described, log = run_processing_job(self.pipeline.endpoints, _job_name(name), request)
        run.log += log
        return described

    def _training(self, job: str, request: dict[str, Any], run: StepRun) -> dict[str, Any]:
        described, log = run_training_job(self.pipeline.endpoints, job, request)
        run.log += log
        return described

    def _tuning(self, name: str, request: dict[str, Any], run: StepRun) -> dict[str, Any]:
        config, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
        objective = config["HyperParameterTuningJobObjective"]
        tuning_job = _job_name(name)[:32].rstrip("-")
        summaries = []
        for k in range(int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])):
            tuned = self._draw(config["ParameterRanges"])
            trial = f"{tuning_job}-{k + 1:03d}-{secrets.token_hex(4)}"
            training = {
                "AlgorithmSpecification": definition["AlgorithmSpecification"],
                "RoleArn": definition["RoleArn"],
                "InputDataConfig": definition["InputDataConfig"],
                "OutputDataConfig": definition["OutputDataConfig"],
                "ResourceConfig": definition.get("ResourceConfig")
                or definition["HyperParameterTuningResourceConfig"],
                "StoppingCondition": definition["StoppingCondition"],
                "HyperParameters": {**definition.get("StaticHyperParameters", {}), **tuned},
                "Environment": definition.get("Environment", {}),
                **(
                    {"CheckpointConfig": definition["CheckpointConfig"]}
                    if "CheckpointConfig" in definition
                    else {}
                ),
            }
            described = self._training(trial, training, run)
            value = next(
                (
                    m["Value"]
                    for m in described["FinalMetricDataList"]
                    if m["MetricName"] == objective["MetricName"]
                ),
                None,
            )
            if value is None:
                raise StepFailed(f"trial {trial} reported no {objective['MetricName']}")
            summaries.append(
                {
                    "TrainingJobName": trial,
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": tuned,
                    "FinalHyperParameterTuningJobObjectiveMetric": {
                        "MetricName": objective["MetricName"],
                        "Value": value,
                    },
                }
            )
        summaries.sort(
            key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
            reverse=objective["Type"] == "Maximize",
        )
        return {
            "HyperParameterTuningJobName": tuning_job,
            "TrainingJobSummaries": summaries,
            "BestTrainingJob": summaries[0],
        }

    def _draw(self, ranges: dict[str, list[dict[str, str]]]) -> dict[str, str]:
        """One trial's values: SageMaker's strategy decides how; any value in range is one it may pick."""
        tuned = {}
        for spec in ranges.get("IntegerParameterRanges", []):
            tuned[spec["Name"]] = str(
                self.pipeline.random.randint(int(spec["MinValue"]), int(spec["MaxValue"]))
            )
        for spec in ranges.get("ContinuousParameterRanges", []):
            tuned[spec["Name"]] = repr(
                self.pipeline.random.uniform(float(spec["MinValue"]), float(spec["MaxValue"]))
            )
        for spec in ranges.get("CategoricalParameterRanges", []):
            tuned[spec["Name"]] = self.pipeline.random.choice(spec["Values"])
        return tuned

    def _condition(self, arguments: dict[str, Any]) -> dict[str, Any]:
        outcome = all(_holds(self.resolve(c)) for c in arguments["Conditions"])
        for step in arguments["IfSteps"] if outcome else arguments["ElseSteps"]:
            self.step(step)
        return {"Outcome": outcome}

    def _register(self, request: dict[str, Any]) -> dict[str, Any]:
        for container in request["InferenceSpecification"]["Containers"]:
            if not exists(self.pipeline.endpoints, container["ModelDataUrl"]):
                raise StepFailed(f"Could not find model data at {container['ModelDataUrl']}")
        statistics = request.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
        if statistics and not exists(self.pipeline.endpoints, statistics["S3Uri"]):
            raise StepFailed(f"no model statistics at {statistics['S3Uri']}")
        sagemaker = self.pipeline.endpoints.client("sagemaker")
        group = request["ModelPackageGroupName"]
        with contextlib.suppress(sagemaker.exceptions.ClientError):
            sagemaker.create_model_package_group(ModelPackageGroupName=group)
        clean = {k: v for k, v in request.items() if v not in ({}, "None")}
        clean["ModelMetrics"] = {k: v for k, v in clean.get("ModelMetrics", {}).items() if v}
        return sagemaker.create_model_package(**clean)


# --- jobs: shared with tests.support.stepfunctions_sagemaker ------------------------------------------
def require_objects(endpoints: Endpoints, uri: str) -> None:
    """SageMaker's rule for an S3Prefix input: at least one object's key starts with the URI."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    listed = endpoints.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    if not listed.get("KeyCount"):
        raise JobFailed(f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source')


def exists(endpoints: Endpoints, uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    listed = endpoints.client("s3").list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(o["Key"] == key for o in listed.get("Contents", []))


def run_processing_job(endpoints: Endpoints, job: str, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A CreateProcessingJob `request` run to its end as SageMaker runs it, on the stand-ins: its
    description (request, name, status) and its log; JobFailed with the job's FailureReason."""
    for item in request.get("ProcessingInputs", []):
        require_objects(endpoints, item["S3Input"]["S3Uri"])
    local = copy.deepcopy(request)
    local["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "local"
    _shards_on_one_host(local)
    local["Environment"] = {**local.get("Environment", {}), **endpoints.job_environment()}
    local.pop("RoleArn", None)
    log = _local_job(endpoints, "create_processing_job", **local | {"ProcessingJobName": job})
    return {**request, "ProcessingJobName": job, "ProcessingJobStatus": "Completed"}, log


def _shards_on_one_host(request: dict[str, Any]) -> None:
    """ShardedByS3Key gives each host its share of the objects: on one host, all of them, which is
    FullyReplicated, the only distribution local mode runs. Local mode cannot shard across hosts."""
    hosts = request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
    for item in request.get("ProcessingInputs", []):
        if item["S3Input"].get("S3DataDistributionType") != "ShardedByS3Key":
            continue
        if hosts != 1:
            raise JobFailed(
                f"harness: input {item['InputName']} is ShardedByS3Key across {hosts} hosts, which "
                "SageMaker local mode cannot reproduce (it gives every host all objects)"
            )
        item["S3Input"]["S3DataDistributionType"] = "FullyReplicated"


def run_training_job(endpoints: Endpoints, job: str, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A CreateTrainingJob `request` run to its end as SageMaker runs it, on the stand-ins: its
    description (with the model at `<S3OutputPath>/<job>/output/model.tar.gz` and the metrics its
    definitions' regexes find in the log, the last value of each) and its log; JobFailed with the job's
    FailureReason."""
    for channel in request.get("InputDataConfig", []):
        require_objects(endpoints, channel["DataSource"]["S3DataSource"]["S3Uri"])
    local = copy.deepcopy(request)
    local["ResourceConfig"]["InstanceType"] = "local"
    local["Environment"] = {**local.get("Environment", {}), **endpoints.job_environment()}
    log = _local_job(endpoints, "create_training_job", **local | {"TrainingJobName": job})
    artifacts = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job}/output/model.tar.gz"
    if not exists(endpoints, artifacts):
        raise JobFailed(f"training job {job} left no model at {artifacts}", log)
    metrics = []
    for definition in request["AlgorithmSpecification"].get("MetricDefinitions", []):
        values = re.findall(definition["Regex"], log, flags=re.MULTILINE)
        if values:
            metrics.append({"MetricName": definition["Name"], "Value": float(values[-1])})
    described = {
        **request,
        "TrainingJobName": job,
        "TrainingJobStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": artifacts},
        "FinalMetricDataList": metrics,
    }
    return described, log


def _local_job(endpoints: Endpoints, call: str, **request: Any) -> str:
    """Runs one job in SageMaker local mode, its S3 on the stand-in; returns the job's log."""
    import boto3
    from sagemaker.local import LocalSagemakerClient, LocalSession

    from smray.workstation.pipeline import local_mode

    boto = boto3.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    session = LocalSession(boto_session=boto, s3_endpoint_url=endpoints.s3_and_sagemaker)
    session.config = {"local": {"local_code": True, "container_config": {"shm_size": "512m"}}}
    log = io.StringIO()
    try:
        with local_mode.job_containers_removed(), contextlib.redirect_stdout(log):
            getattr(LocalSagemakerClient(session), call)(**request)
    except RuntimeError as exc:  # local mode: the job's containers exited non-zero
        tail = "\n".join(log.getvalue().splitlines()[-30:])
        raise JobFailed(_failure_line(log.getvalue()) or f"{exc}\n{tail}", log.getvalue()) from exc
    return log.getvalue()


def _failure_line(log: str) -> str:
    """The job's own failure line, as SageMaker shows it (FailureReason / ExitMessage)."""
    lines = [COLOURS.sub("", line) for line in log.splitlines() if "ERROR" in line or "error:" in line]
    return lines[-1].split(" | ", 1)[-1].strip() if lines else ""  # less Compose's "<container> | "


def _job_name(step: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]", "-", step)[:40].strip("-") + "-" + secrets.token_hex(4)


def _walk(document: Any, path: str) -> Any:
    """A property path (Outputs['train'].S3Output.S3Uri, TrainingJobSummaries[0].TrainingJobName) or a
    JsonGet path (regression_metrics.rmse.value) over a description or document."""
    for name, key, index in re.findall(r"([^.\[\]]+)|\['([^']+)'\]|\[(\d+)\]", path):
        if name:
            document = document[name]
        elif index:
            document = document[int(index)]
        else:  # a list of outputs, named
            document = next(o for o in document if key in (o.get("OutputName"), o.get("ChannelName")))
    return document


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _holds(condition: dict[str, Any]) -> bool:
    kind = condition["Type"]
    if kind == "Not":
        return not _holds(condition["Expression"])
    if kind == "Or":
        return any(_holds(c) for c in condition["Conditions"])
    left, right = condition["LeftValue"], condition["RightValue"]
    return {
        "Equals": left == right,
        "GreaterThan": left > right,
        "GreaterThanOrEqualTo": left >= right,
        "LessThan": left < right,
        "LessThanOrEqualTo": left <= right,
    }[kind]
