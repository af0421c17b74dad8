"""Deploying the retraining workflow: the model package group it registers into, the state machine and
its role, and the EventBridge schedule that starts it with a constant input, each role with
least-privilege policies on listed resources. The gate is fixed here: its metric and direction from
`--gate` (default: the task's, smray.gate) against the task of the table's schema, read from the input's
SchemaUri as the jobs will read it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from smray import hyperparameters, workflow
from smray import schema as schema_mod
from smray.contracts import train as train_contract
from smray.contracts.jobs import SCHEMA_FILE
from smray.errors import UserError
from smray.gate import GateRule
from smray.retry import NotYet, retry
from smray.schema import Schema
from smray.workstation import validation
from smray.workstation.commands.run_aws import BUCKET
from smray.workstation.retraining import statemachine
from smray.workstation.schedule.expressions import parse as parse_schedule

SYNC_RULES = (
    "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
)
JOB_NAME_MAX = 63  # SageMaker's rule for every job, model and config name: smray.schema.TABLE_NAME
# a prefix is followed by "-" and a letter or digit, so any hyphens in it keep job names valid
JOB_NAME_PREFIX = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*")
# A state machine's name, which also names its roles (<name>-workflow: IAM's 64 characters at most)
STATE_MACHINE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,55}")
# Folders of letters, digits, '.', '_' and '-' (none starting with '.'), joined by single slashes
OUTPUT_PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
OUTPUT_PREFIX_MAX = 512  # with the execution's name and the layout's keys, within S3's 1024 bytes
SCHEDULED_EXECUTION_NAME = 36  # EventBridge names each execution it starts with a UUID
# What Step Functions answers, as AccessDenied or InvalidArn, until a new role has propagated through IAM
ROLE_NOT_YET_ASSUMABLE = "is authorized to assume the provided role"
ROLE_PROPAGATION_S = 120.0
T = TypeVar("T")


@dataclass(frozen=True)
class Names:
    account: str
    region: str
    state_machine: str = "smray-retraining"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    @property
    def state_machine_arn(self) -> str:
        return self.arn("states", f"stateMachine:{self.state_machine}")

    @property
    def workflow_role(self) -> str:
        return f"{self.state_machine}-workflow"

    @property
    def schedule_role(self) -> str:
        return f"{self.state_machine}-schedule"

    @property
    def rule(self) -> str:
        return f"{self.state_machine}-schedule"


def _trust(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def workflow_policy(names: Names, execution_input: dict[str, Any], glue_job: str = "") -> dict[str, Any]:
    """What the state machine may do: the jobs, model, config, model package and endpoint its executions
    name, and the evaluation.json they read, nothing else (List actions take no resource: that one is
    `*`). `execution_input` with its defaults. SageMaker lowercases names inside its ARNs."""
    prefix = execution_input["JobNamePrefix"].lower()
    group = execution_input["ModelPackageGroupName"].lower()
    outputs = f"arn:aws:s3:::{execution_input['OutputBucket']}/{execution_input['OutputPrefix']}/*"

    def sm(kind: str, name: str) -> str:
        return names.arn("sagemaker", f"{kind}/{name}")

    statements = [
        {
            "Sid": "Jobs",
            "Effect": "Allow",
            "Action": [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:AddTags",
                "sagemaker:ListTags",  # the .sync integrations read the job's tags
            ],
            "Resource": [sm("training-job", f"{prefix}-*"), sm("processing-job", f"{prefix}-*")],
        },
        {
            "Sid": "Deploy",
            "Effect": "Allow",
            "Action": [
                "sagemaker:CreateModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:AddTags",
            ],
            "Resource": [
                sm("model", f"{prefix}-*"),
                sm("endpoint-config", f"{prefix}-*"),
                sm("endpoint", execution_input["EndpointName"].lower()),
            ],
        },
        {"Sid": "FindEndpoint", "Effect": "Allow", "Action": ["sagemaker:ListEndpoints"], "Resource": "*"},
        {
            "Sid": "Register",
            "Effect": "Allow",
            "Action": ["sagemaker:CreateModelPackage"],
            "Resource": [sm("model-package-group", group), sm("model-package", f"{group}/*")],
        },
        {
            # ReadEvaluation reads evaluation.json; SageMaker may check the model and the statistics a
            # model package names with the caller's permissions
            "Sid": "ReadArtifacts",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [
                f"{outputs}/{statemachine.EVALUATION_KEY}",
                f"{outputs}/{statemachine.LAYOUT['model']}/*",
            ],
        },
        {
            "Sid": "PassTheJobRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": execution_input["RoleArn"],
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        {
            "Sid": "SyncIntegrations",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": [names.arn("events", f"rule/{rule}") for rule in SYNC_RULES],
        },
    ]
    if glue_job:
        statements.append(
            {
                "Sid": "PrepareWithGlue",
                "Effect": "Allow",
                "Action": ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
                "Resource": names.arn("glue", f"job/{glue_job}"),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def schedule_policy(names: Names) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "states:StartExecution", "Resource": names.state_machine_arn}
        ],
    }


def check_input(execution_input: dict[str, Any]) -> None:
    missing = [k for k in statemachine.REQUIRED_INPUT if k not in execution_input]
    if missing:
        raise UserError(f"the execution input lacks {', '.join(missing)}")
    for parameter in workflow.PARAMETERS:
        if parameter.name not in execution_input:
            continue  # the definition's default
        value = execution_input[parameter.name]
        if parameter.name == "Threshold":
            validation.threshold(value, parameter.name)
            continue
        validation.count(value, parameter.name)
        if parameter.hyperparameter:  # the training job's own bounds, checked before Ingest runs
            hyperparameters.BY_NAME[parameter.hyperparameter].check(value)
    if "ModelPackageGroupName" in execution_input:
        validation.group_name(execution_input["ModelPackageGroupName"], "ModelPackageGroupName")
    _check_job_name_prefix(execution_input["JobNamePrefix"])
    _check_output(execution_input["OutputBucket"], execution_input["OutputPrefix"])


def _check_output(bucket: Any, prefix: Any) -> None:
    """The definition builds URIs and keys as s3://<OutputBucket>/<OutputPrefix>/<execution>/..."""
    if not isinstance(bucket, str) or not BUCKET.fullmatch(bucket):
        raise UserError(
            f"OutputBucket {bucket!r} is not an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'"
        )
    if not isinstance(prefix, str) or len(prefix) > OUTPUT_PREFIX_MAX or not OUTPUT_PREFIX.fullmatch(prefix):
        raise UserError(
            f"OutputPrefix {prefix!r} is not a key prefix: at most {OUTPUT_PREFIX_MAX} characters, folders "
            "of letters, digits, '.', '_' and '-' joined by single '/', without a leading or trailing '/'"
        )


def read_schema(s3: Any, schema_uri: Any) -> Schema:
    """The table's schema: schema.json in the input's SchemaUri folder, as the Ingest and Preprocess jobs
    will read it."""
    uri = validation.text(schema_uri, "SchemaUri")
    bucket, _, folder = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not BUCKET.fullmatch(bucket):
        raise UserError(f"SchemaUri {uri!r} is not an S3 folder: s3://<bucket>/<folder>/")
    key = f"{folder.rstrip('/')}/{SCHEMA_FILE}".lstrip("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "NoSuchBucket"):
            raise
        raise UserError(
            f"SchemaUri {uri}: no s3://{bucket}/{key} ({exc.response['Error']['Code']}): upload the table's "
            f"schema there (`smray run aws --schema` uploads it under s3://<bucket>/smray/schemas/<name>/)"
        ) from None
    source = f"s3://{bucket}/{key}"
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise UserError(f"{source} is not JSON: {exc}") from None
    return schema_mod.parse(raw, source)


def gate_of(table: Schema, gate_text: str, execution_input: dict[str, Any]) -> GateRule:
    """The deployed gate: `gate_text` (default: the task's) with the input's Threshold where it has one;
    a threshold the metric can never reach is refused (each metric where higher is better is at most 1)."""
    threshold = execution_input.get("Threshold")
    workflow.refuse_two_thresholds(table.task, gate_text, threshold, ("--gate", "Threshold"))
    rule = workflow.gate_rule(table.task, gate_text, threshold)
    if rule.higher_is_better and rule.threshold > 1:
        raise UserError(
            f"the gate {rule} can never pass: a {table.task.value} model's {rule.metric} is at most 1 "
            "(set Threshold, or --gate, to a number up to 1)"
        )
    return rule


def with_defaults(execution_input: dict[str, Any], rule: GateRule, table: Schema) -> dict[str, Any]:
    """The input as the definition's Defaults state completes it."""
    return {**statemachine.input_defaults(rule, table.name), **execution_input}


def ensure_group(sagemaker: Any, group: str, table: Schema) -> str:
    """The model package group the workflow registers into, created when missing; returns its ARN."""
    try:
        return sagemaker.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":  # SageMaker's "does not exist"
            raise
    return sagemaker.create_model_package_group(
        ModelPackageGroupName=group,
        ModelPackageGroupDescription=f"smray: {table.task.value} models of the table {table.name}",
    )["ModelPackageGroupArn"]


def longest_job_name_prefix() -> int:
    """Job names are <JobNamePrefix>-<execution name><suffix>; a scheduled execution's name is a UUID."""
    return JOB_NAME_MAX - len("-") - SCHEDULED_EXECUTION_NAME - statemachine.longest_job_suffix()


def _check_job_name_prefix(prefix: Any) -> None:
    longest = longest_job_name_prefix()
    if not isinstance(prefix, str) or not JOB_NAME_PREFIX.fullmatch(prefix) or len(prefix) > longest:
        raise UserError(
            f"JobNamePrefix {prefix!r} cannot start SageMaker job names: use at most {longest} characters, "
            f"letters, digits and hyphens, the first a letter or digit (job names add a "
            f"{SCHEDULED_EXECUTION_NAME}-character execution name and suffixes, within {JOB_NAME_MAX})"
        )


def _ensure_role(iam: Any, name: str, service: str, policy: dict[str, Any]) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(_trust(service)))
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_trust(service)))["Role"][
            "Arn"
        ]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    return arn


def deploy(
    clients: dict[str, Any],  # boto3 clients: iam, stepfunctions, events, s3, sagemaker
    names: Names,
    schedule: str,
    execution_input: dict[str, Any],
    glue_job: str = "",
    spot_max_wait_s: int = 0,
    gate_text: str = "",
) -> dict[str, str]:
    """Creates or updates the model package group, the roles, the state machine and the schedule;
    returns their ARNs. Everything is checked before anything is created."""
    train_contract.check_max_wait(spot_max_wait_s)
    parse_schedule(schedule)  # EventBridge's own rules
    check_input(execution_input)
    table = read_schema(clients["s3"], execution_input["SchemaUri"])
    rule = gate_of(table, gate_text, execution_input)
    complete = with_defaults(execution_input, rule, table)
    definition = statemachine.render(glue_job, spot_max_wait_s, rule, table.name)
    iam, sfn, events = clients["iam"], clients["stepfunctions"], clients["events"]
    group = ensure_group(clients["sagemaker"], complete["ModelPackageGroupName"], table)
    workflow_role = _ensure_role(
        iam, names.workflow_role, "states.amazonaws.com", workflow_policy(names, complete, glue_job)
    )
    arn = _put_state_machine(sfn, names, definition, workflow_role)
    schedule_role = _ensure_role(iam, names.schedule_role, "events.amazonaws.com", schedule_policy(names))
    rule_arn = events.put_rule(
        Name=names.rule,
        ScheduleExpression=schedule,
        State="ENABLED",
        Description=f"starts {names.state_machine}",
    )["RuleArn"]
    events.put_targets(
        Rule=names.rule,
        Targets=[
            {"Id": "retraining", "Arn": arn, "RoleArn": schedule_role, "Input": json.dumps(execution_input)}
        ],
    )
    return {
        "model_package_group": group,
        "state_machine": arn,
        "rule": rule_arn,
        "workflow_role": workflow_role,
        "schedule_role": schedule_role,
    }


def _put_state_machine(sfn: Any, names: Names, definition: str, role_arn: str) -> str:
    """Creates the state machine, or updates it when one of its name exists; returns its ARN."""
    pages = sfn.get_paginator("list_state_machines").paginate()
    existing = {m["name"]: m["stateMachineArn"] for page in pages for m in page["stateMachines"]}
    arn = existing.get(names.state_machine)
    if arn:
        _once_role_propagates(
            lambda: sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn),
            role_arn,
        )
        return arn
    created = _once_role_propagates(
        lambda: sfn.create_state_machine(name=names.state_machine, definition=definition, roleArn=role_arn),
        role_arn,
    )
    return created["stateMachineArn"]


def _once_role_propagates(call: Callable[[], T], role_arn: str) -> T:
    """`call()`, retried while Step Functions cannot assume `role_arn` yet: IAM is eventually consistent,
    and a role just created is refused for seconds."""

    def attempt() -> T:
        try:
            return call()
        except ClientError as exc:
            if ROLE_NOT_YET_ASSUMABLE not in str(exc):
                raise
            raise NotYet(str(exc)) from exc

    return retry(
        attempt,
        what=f"Step Functions assuming the role {role_arn}",
        timeout_s=ROLE_PROPAGATION_S,
        retry_on=(),
    )


def start(sfn: Any, state_machine_arn: str, execution_input: dict[str, Any], name: str) -> str:
    check_input(execution_input)
    return sfn.start_execution(
        stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]


def executions(sfn: Any, state_machine_arn: str, limit: int = 20) -> list[dict[str, Any]]:
    """Newest first, each with its failure (error and cause) when it failed."""
    found = sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=limit)["executions"]
    out = []
    for e in found:
        described = sfn.describe_execution(executionArn=e["executionArn"])
        out.append(
            {
                "name": e["name"],
                "status": e["status"],
                "started": str(e["startDate"]),
                "error": described.get("error", ""),
                "cause": described.get("cause", ""),
            }
        )
    return out
