"""moto's Step Functions engine running a state machine's SageMaker `.sync` jobs for real, for tests: each
`arn:aws:states:::sagemaker:createProcessingJob.sync` or `createTrainingJob.sync` task runs its job on the
real image in SageMaker local mode against the stand-ins (tests.support.aws_standins), with SageMaker's S3
rules (tests.support.sagemaker_pipeline's job runners), and the task waits for it as `.sync` does.

Where it runs: the stand-ins' moto server. ThreadedMotoServer serves moto's process-wide backends, so the
state machine is created and executed through that server (`execute_state_machine`, the switch that moto's
config API sets, is turned on in-process) and reads and writes the same S3 and SageMaker the jobs' containers
use. moto's engine, in server mode, sends a task's calls to `http://localhost:$MOTO_PORT`; the stand-ins
listen on the Docker bridge's gateway, so a second server on 127.0.0.1 (same backends) takes those calls.
Nothing patches botocore, and no backend is reset (an in-process `mock_aws` would reset them all).

What a `.sync` job task does here, as Step Functions does on AWS: Create*Job (the request checked against
SageMaker's API model; a name in use or a malformed request fails the state with
SageMaker.AmazonSageMakerException, the error the optimised integration names every SageMaker error), then
polls the job until it ends. A Completed job's Describe*Job is the task's result (the request, name,
status, ARN, the training job's ModelArtifacts and FinalMetricDataList; timestamps in epoch milliseconds,
unchecked against AWS: nothing in the definition reads them); a Failed one fails the state with
States.TaskFailed (AWS's name for a Task that failed, not a SageMaker API error: the job was created and
ran), its cause the job's Describe*Job as JSON with its FailureReason, as AWS shows a failed `.sync` job and
as moto's own Glue `.sync` port does. A Catch on States.ALL takes it; the retriers on
SageMaker.AmazonSageMakerException do not, as on AWS.

moto's gaps, fixed only for the engine, only while `sagemaker_jobs_in_step_functions` is active:
- moto's lexer takes the key `"RoleArn.$"` for the task-credentials keyword, so a Parameters field
  `"RoleArn.$": "$.RoleArn"` reached SageMaker as the literal text: it is read as the path it is.
- moto answers a failed optimised SageMaker call (createModel, createEndpoint...) with States.Runtime,
  which no Catch takes; Step Functions names it SageMaker.AmazonSageMakerException.
- An AWS SDK task's answer: a streamed body becomes its text, datetimes ISO 8601 text (moto's
  describe_execution cannot encode a datetime left in an execution's output).
Not reproduced: UpdateEndpoint (moto has none: the task fails), stopping a job when its execution stops,
the job's logs in CloudWatch, spot capacity, MaxRuntimeInSeconds, an input ShardedByS3Key across several
hosts (refused: local mode gives every host all objects), SageMaker's server-side checks beyond its API
model (ARN patterns, instance types, quotas)."""

from __future__ import annotations

import functools
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from unittest import mock

import boto3
from botocore.exceptions import ClientError, ParamValidationError
from botocore.response import StreamingBody
from botocore.validate import validate_parameters
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name import failure_event
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadbinding import (
    payload_binding,
)
from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadvaluelit import (
    payload_value_str,
)
from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
    StringContextPath,
    StringJsonPath,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_callback,
    state_task_service_unsupported,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from tests.support.aws_standins import REGION, Endpoints
from tests.support.sagemaker_pipeline import JobFailed, run_processing_job, run_training_job

SAGEMAKER_ERROR = "SageMaker.AmazonSageMakerException"
# runs a job to its end: (endpoints, job name, request) -> (its description, its log); JobFailed
Runner = Callable[[Endpoints, str, dict[str, Any]], tuple[dict[str, Any], str]]


def read_streamed_bodies(eval_service_task: Callable) -> Callable:
    """moto's AWS SDK task leaves a streamed response (S3 GetObject's Body) a stream; Step Functions
    answers with its text."""

    def read(self: Any, env: Environment, *args: Any, **kwargs: Any) -> None:
        eval_service_task(self, env, *args, **kwargs)
        response = env.stack[-1]
        for key, value in list(response.items()):
            if isinstance(value, StreamingBody):
                response[key] = value.read().decode()

    return read


@dataclass(frozen=True)
class JobKind:
    name: str  # as SageMaker's fields name it: <name>Name, <name>Status, <name>Arn
    arn_type: str  # arn:aws:sagemaker:<region>:<account>:<arn_type>/<job name, lowercased>
    stage: str  # <stage>StartTime, <stage>EndTime
    run: Runner


JOB_ACTIONS = {
    "createProcessingJob": JobKind("ProcessingJob", "processing-job", "Processing", run_processing_job),
    "createTrainingJob": JobKind("TrainingJob", "training-job", "Training", run_training_job),
}


@dataclass
class Job:
    """One job a task created: its request, and its description once it ended (Describe*Job)."""

    kind: JobKind
    name: str
    arn: str
    request: dict[str, Any]
    created_ms: int
    ended: threading.Event = field(default_factory=threading.Event)
    described: dict[str, Any] = field(default_factory=dict)
    log: str = ""

    @property
    def status(self) -> str:
        return self.described.get(f"{self.kind.name}Status", "InProgress")


class Jobs:
    """The jobs the state machine's tasks created, by name; each runs in its own thread, as SageMaker runs
    a job while Step Functions polls it."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.by_name: dict[str, Job] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def create(self, action: str, request: dict[str, Any], account: str) -> Job:
        """Create*Job: refused as SageMaker refuses it (a malformed request, a name in use), else started."""
        kind = JOB_ACTIONS[action]
        operation = f"Create{kind.name}"
        _check_request(operation, request)
        name = request[f"{kind.name}Name"]
        with self._lock:
            if name in self.by_name:
                raise _sagemaker_error("ResourceInUse", f"Job name {name} is already in use", operation)
            arn = f"arn:aws:sagemaker:{REGION}:{account}:{kind.arn_type}/{name.lower()}"
            job = Job(kind, name, arn, request, created_ms=_now_ms())
            self.by_name[name] = job
        thread = threading.Thread(target=self._run, args=(job,), name=f"sagemaker-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def _run(self, job: Job) -> None:
        started, kind = _now_ms(), job.kind
        try:
            described, job.log = kind.run(self.endpoints, job.name, job.request)
        except Exception as exc:  # JobFailed: the job's own reason; anything else: the harness's
            job.log = getattr(exc, "log", "")
            reason = str(exc) if isinstance(exc, JobFailed) else f"InternalServerError: {exc!r}"
            described = {**job.request, f"{kind.name}Name": job.name, f"{kind.name}Status": "Failed"}
            described["FailureReason"] = reason
        job.described = described | {
            f"{kind.name}Arn": job.arn,
            "CreationTime": job.created_ms,
            f"{kind.stage}StartTime": started,
            f"{kind.stage}EndTime": _now_ms(),
            "LastModifiedTime": _now_ms(),
        }
        job.ended.set()

    def wait_all(self) -> None:
        for thread in self._threads:
            thread.join()


def _now_ms() -> int:
    return int(time.time() * 1000)


@functools.cache
def _request_shape(operation: str) -> Any:
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="-", aws_secret_access_key="-")
    return client.meta.service_model.operation_model(operation).input_shape


def _check_request(operation: str, request: dict[str, Any]) -> None:
    """SageMaker's first check of a request, its API model (required fields, types, lengths)."""
    try:
        validate_parameters(request, _request_shape(operation))
    except ParamValidationError as exc:
        raise _sagemaker_error("ValidationException", str(exc), operation) from None


def _sagemaker_error(code: str, message: str, operation: str) -> ClientError:
    meta = {"HTTPStatusCode": 400, "RequestId": secrets.token_hex(16)}
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, operation)


class SageMakerService(state_task_service_unsupported.StateTaskServiceUnsupported):
    """moto's SageMaker integration, with `.sync` jobs that run (`jobs`); every other action is forwarded to
    moto's SageMaker as moto does, its errors named as Step Functions names them."""

    def __init__(self, jobs: Jobs) -> None:
        state_task_service_callback.StateTaskServiceCallback.__init__(
            self,
            supported_integration_patterns={ResourceCondition.WaitForTaskToken, ResourceCondition.Sync},
        )
        self.jobs = jobs

    def _is_job(self) -> bool:
        return self.resource.api_action in JOB_ACTIONS and self.resource.condition == ResourceCondition.Sync

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: Any,
    ) -> None:
        if not self._is_job():
            super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
            return
        job = self.jobs.create(self.resource.api_action, normalised_parameters, resource_runtime_part.account)
        env.stack.append({f"{job.kind.name}Arn": job.arn})  # Create*Job's answer

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: Any,
    ) -> Callable[[], Any]:
        if not self._is_job():
            return super()._build_sync_resolver(
                env, resource_runtime_part, normalised_parameters, state_credentials
            )
        env.stack.pop()  # Create*Job's answer: the result is the job's description
        kind = JOB_ACTIONS[self.resource.api_action]
        job = self.jobs.by_name[normalised_parameters[f"{kind.name}Name"]]
        task_failed = StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed)

        def described() -> dict[str, Any] | None:
            if not job.ended.is_set():
                return None
            if job.status == "Completed":
                return job.described
            raise failure_event.FailureEventException(self._failure(env, task_failed, job.described))

        return described

    def _failure(self, env: Environment, error: ErrorName, cause: Any) -> failure_event.FailureEvent:
        text = cause if isinstance(cause, str) else to_json_str(cause)
        details = TaskFailedEventDetails(
            error=error.error_name,
            cause=text,
            resource=self._get_sfn_resource(),
            resourceType=self._get_sfn_resource_type(),
        )
        return failure_event.FailureEvent(
            env=env,
            error_name=error,
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(taskFailedEventDetails=details),
        )

    def _from_error(self, env: Environment, ex: Exception) -> failure_event.FailureEvent:
        """A SageMaker API error, as the optimised integration reports it (the Java SDK's message)."""
        if not isinstance(ex, ClientError):
            return super()._from_error(env, ex)
        error, meta = ex.response["Error"], ex.response["ResponseMetadata"]
        cause = (
            f"{error['Message']} (Service: AmazonSageMaker; Status Code: {meta['HTTPStatusCode']}; "
            f"Error Code: {error['Code']}; Request ID: {meta.get('RequestId', '')}; Proxy: null)"
        )
        return self._failure(env, CustomErrorName(SAGEMAKER_ERROR), cause)


def _with_sagemaker(jobs: Jobs, original: Callable[..., Any]) -> Callable[..., Any]:
    def service_for(service_name: str) -> Any:
        return SageMakerService(jobs) if service_name == "sagemaker" else original(service_name=service_name)

    return service_for


def _role_arn_paths(original: Callable[..., Any]) -> Callable[..., Any]:
    """A Parameters field `"RoleArn.$"` read as the path it is (moto's lexer makes it a literal)."""

    def visit(self: Preprocessor, ctx: Any) -> Any:
        binding = original(self, ctx)
        value = binding.payload_value
        if not (binding.field.endswith(".$") and isinstance(value, payload_value_str.PayloadValueStr)):
            return binding
        if not value.val.startswith("$"):
            raise NotImplementedError(f"{binding.field}: {value.val!r} (only paths are read here)")
        path = StringContextPath(value.val) if value.val.startswith("$$") else StringJsonPath(value.val)
        return payload_binding.PayloadBindingStringExpressionSimple(
            field=binding.field[:-2], string_expression_simple=path
        )

    return visit


def _timestamps_as_text(eval_service_task: Callable[..., None]) -> Callable[..., None]:
    """An AWS SDK task's datetimes as the ISO 8601 text Step Functions gives."""

    def answer(self: Any, env: Environment, *args: Any, **kwargs: Any) -> None:
        eval_service_task(self, env, *args, **kwargs)
        env.stack[-1] = json.loads(json.dumps(env.stack[-1], default=_iso))

    return answer


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in an AWS SDK answer")


@contextmanager
def sagemaker_jobs_in_step_functions(endpoints: Endpoints) -> Iterator[Jobs]:
    """While active, state machines created through the stand-ins' server execute, and their SageMaker
    `.sync` jobs run on the image in local mode; yields the jobs they create. On the way out, waits for
    any job still running (its containers are local mode's to remove)."""
    jobs = Jobs(endpoints)
    loopback = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    loopback.start()
    sdk_answer = state_task_service_aws_sdk.StateTaskServiceAwsSdk._eval_service_task
    try:
        with ExitStack() as stack:
            stack.enter_context(
                mock.patch.dict(os.environ, {"MOTO_PORT": str(loopback.get_host_and_port()[1])})
            )
            stack.enter_context(
                mock.patch.dict(default_user_config, {"stepfunctions": {"execute_state_machine": True}})
            )
            service_for = _with_sagemaker(jobs, state_task_factory.state_task_service_for)
            stack.enter_context(mock.patch.object(state_task_factory, "state_task_service_for", service_for))
            visit = _role_arn_paths(Preprocessor.visitPayload_binding_value)
            stack.enter_context(mock.patch.object(Preprocessor, "visitPayload_binding_value", visit))
            answer = _timestamps_as_text(read_streamed_bodies(sdk_answer))
            stack.enter_context(
                mock.patch.object(
                    state_task_service_aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", answer
                )
            )
            yield jobs
    finally:
        jobs.wait_all()
        loopback.stop()


@dataclass
class Outcome:
    """An execution as it ended: DescribeExecution, and the states it entered, in order."""

    described: dict[str, Any]
    entered: list[str]
    events: list[dict[str, Any]]

    def output_of(self, state: str) -> Any:
        """The output of the state's last exit, parsed."""
        exits = [e["stateExitedEventDetails"] for e in self.events if "stateExitedEventDetails" in e]
        return json.loads([d for d in exits if d["name"] == state][-1]["output"])


def wait_for(sfn: Any, execution_arn: str, timeout_s: float, poll_s: float = 1.0) -> Outcome:
    """Polls the execution every `poll_s` until it ends (or `timeout_s`), as `smray retraining executions`
    would see it."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    events = [e for page in pages for e in page["events"]]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return Outcome(described, entered, events)
