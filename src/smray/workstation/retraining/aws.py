"""Deploying the retraining workflow: the state machine and its role, and the EventBridge schedule
that starts it with a constant input, each role with least-privilege policies on listed resources."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from smray.errors import UserError
from smray.workstation.retraining import statemachine
from smray.workstation.schedule.expressions import parse as parse_schedule

SYNC_RULES = (
    "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
)


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
    """What the state machine may do: the jobs, model, config and endpoint its executions name, nothing
    else (List actions take no resource: that one is `*`)."""
    prefix = execution_input["JobNamePrefix"]

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
    threshold = execution_input["Threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise UserError(f"Threshold must be a number, got {threshold!r}")


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
    clients: dict[str, Any],  # boto3 clients: iam, stepfunctions, events
    names: Names,
    schedule: str,
    execution_input: dict[str, Any],
    glue_job: str = "",
    spot_max_wait_s: int = 0,
) -> dict[str, str]:
    """Creates or updates the roles, the state machine and the schedule; returns their ARNs."""
    parse_schedule(schedule)  # EventBridge's own rules, checked before anything is created
    check_input(execution_input)
    iam, sfn, events = clients["iam"], clients["stepfunctions"], clients["events"]
    workflow_role = _ensure_role(
        iam, names.workflow_role, "states.amazonaws.com", workflow_policy(names, execution_input, glue_job)
    )
    definition = statemachine.render(glue_job, spot_max_wait_s)
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if names.state_machine in existing:
        arn = existing[names.state_machine]
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=workflow_role)
    else:
        arn = sfn.create_state_machine(
            name=names.state_machine, definition=definition, roleArn=workflow_role
        )["stateMachineArn"]
    schedule_role = _ensure_role(iam, names.schedule_role, "events.amazonaws.com", schedule_policy(names))
    rule = events.put_rule(
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
        "state_machine": arn,
        "rule": rule,
        "workflow_role": workflow_role,
        "schedule_role": schedule_role,
    }


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
