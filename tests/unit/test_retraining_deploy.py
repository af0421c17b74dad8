"""Deploying the retraining workflow against moto: waiting for a new role to propagate, job names that fit
SageMaker's limits, the workflow role's policy, and finding an existing state machine on any page."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from smray.errors import PlatformError, UserError, one_line
from smray.schema import TABLE_NAME
from smray.workstation.retraining import aws, statemachine

from .test_retraining_statemachine import INPUT, put_schema

NAMES = aws.Names(account="123456789012", region="us-east-1")
NOT_ASSUMABLE = ClientError(
    {
        "Error": {
            "Code": "AccessDeniedException",
            "Message": "Neither the global service principal states.amazonaws.com, nor the regional one is "
            "authorized to assume the provided role.",
        }
    },
    "CreateStateMachine",
)


class RoleNotYetPropagated:
    """Step Functions as it answers right after CreateRole: refuses the role `failures` times, then moto."""

    def __init__(self, sfn, failures: int) -> None:
        self._sfn, self.failures, self.calls = sfn, failures, 0

    def __getattr__(self, name):
        return getattr(self._sfn, name)

    def _refuse_then(self, call, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise NOT_ASSUMABLE
        return call(**kwargs)

    def create_state_machine(self, **kwargs):
        return self._refuse_then(self._sfn.create_state_machine, **kwargs)

    def update_state_machine(self, **kwargs):
        return self._refuse_then(self._sfn.update_state_machine, **kwargs)


@pytest.fixture
def clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        made = {
            s: boto3.client(s, region_name="us-east-1")
            for s in ("iam", "stepfunctions", "events", "s3", "sagemaker")
        }
        put_schema(made["s3"])
        yield made


def test_deploy_waits_until_step_functions_accepts_the_new_role(clients):
    sfn = clients["stepfunctions"]
    clients["stepfunctions"] = RoleNotYetPropagated(sfn, failures=2)
    made = aws.deploy(clients, NAMES, "rate(1 day)", INPUT)
    assert clients["stepfunctions"].calls == 3
    assert [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]] == [
        made["state_machine"]
    ]
    clients["stepfunctions"] = RoleNotYetPropagated(sfn, failures=1)  # the update waits the same way
    assert aws.deploy(clients, NAMES, "rate(1 day)", INPUT) == made
    assert clients["stepfunctions"].calls == 2


def test_a_role_that_never_propagates_fails_in_one_line_naming_it(clients, monkeypatch):
    monkeypatch.setattr(aws, "ROLE_PROPAGATION_S", 0.3)
    clients["stepfunctions"] = RoleNotYetPropagated(clients["stepfunctions"], failures=10**6)
    with pytest.raises(PlatformError) as failed:
        aws.deploy(clients, NAMES, "rate(1 day)", INPUT)
    line = one_line(failed.value)
    assert "arn:aws:iam::123456789012:role/smray-retraining-workflow" in line
    assert "authorized to assume the provided role" in line and "\n" not in str(failed.value)


def test_other_refusals_are_not_retried(clients):
    class Refusing(RoleNotYetPropagated):
        def create_state_machine(self, **kwargs):
            self.calls += 1
            raise ClientError(
                {"Error": {"Code": "InvalidDefinition", "Message": "bad"}}, "CreateStateMachine"
            )

    clients["stepfunctions"] = Refusing(clients["stepfunctions"], failures=0)
    with pytest.raises(ClientError, match="InvalidDefinition"):
        aws.deploy(clients, NAMES, "rate(1 day)", INPUT)
    assert clients["stepfunctions"].calls == 1


def test_the_longest_job_name_suffix_is_read_from_the_definition():
    assert statemachine.longest_job_suffix() == len("-preprocess")
    assert aws.longest_job_name_prefix() == 63 - len("-") - 36 - len("-preprocess")


@pytest.mark.parametrize(
    "prefix",
    ["smray-housing-01", "smray_housing", "-smray", "", 42],  # 16 characters: one too many
)
def test_job_name_prefixes_sagemaker_would_refuse_are_refused_at_deploy_and_start(clients, prefix):
    bad = {**INPUT, "JobNamePrefix": prefix}
    with pytest.raises(UserError, match=r"JobNamePrefix .* at most 15 characters") as refused:
        aws.deploy(clients, NAMES, "rate(1 day)", bad)
    assert "\n" not in str(refused.value)
    assert clients["stepfunctions"].list_state_machines()["stateMachines"] == []
    assert clients["iam"].list_roles()["Roles"] == []
    assert clients["sagemaker"].list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    with pytest.raises(UserError, match="JobNamePrefix"):
        aws.start(clients["stepfunctions"], NAMES.state_machine_arn, bad, "manual-1")


def test_the_longest_allowed_prefix_makes_valid_job_names(clients):
    prefix = "Smray-Housing-1"  # 15 characters
    longest = f"{prefix}-{'0' * 36}-preprocess"
    assert len(longest) == 63 and TABLE_NAME.fullmatch(longest)  # SageMaker's name rule
    aws.check_input({**INPUT, "JobNamePrefix": prefix})


def _statement(policy: dict, sid: str) -> dict:
    (found,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    return found


def test_the_workflow_policy_names_lowercase_arns_and_what_sync_integrations_need():
    given = {"JobNamePrefix": "Smray-Housing", "EndpointName": "Housing", "ModelPackageGroupName": "Housing"}
    policy = aws.workflow_policy(NAMES, INPUT | given)
    jobs = _statement(policy, "Jobs")
    assert jobs["Resource"] == [
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/smray-housing-*",
        "arn:aws:sagemaker:us-east-1:123456789012:processing-job/smray-housing-*",
    ]
    assert {"sagemaker:AddTags", "sagemaker:ListTags"} <= set(jobs["Action"])
    deploy = _statement(policy, "Deploy")
    assert deploy["Resource"] == [
        "arn:aws:sagemaker:us-east-1:123456789012:model/smray-housing-*",
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/smray-housing-*",
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/housing",
    ]
    assert "sagemaker:DescribeEndpoint" in deploy["Action"]  # the workflow polls the endpoint's status
    register = _statement(policy, "Register")
    assert register["Action"] == ["sagemaker:CreateModelPackage"]
    assert register["Resource"] == [
        "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/housing",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/housing/*",
    ]
    read = _statement(policy, "ReadArtifacts")  # the executions' evaluation.json and models, nothing else
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == [
        "arn:aws:s3:::smray-example/retraining/*/evaluation/evaluation.json",
        "arn:aws:s3:::smray-example/retraining/*/model/*",
    ]
    sync = _statement(policy, "SyncIntegrations")
    assert set(sync["Action"]) == {"events:PutTargets", "events:PutRule", "events:DescribeRule"}
    assert sync["Resource"] == [
        "arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForSageMakerProcessingJobsRule",
        "arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    ]


def test_deploy_finds_its_state_machine_beyond_the_first_page(clients):
    sfn = clients["stepfunctions"]
    for i in range(100):  # moto's page holds 100: smray-retraining, created after them, is on the second
        sfn.create_state_machine(
            name=f"other-{i:03}", definition=statemachine.render(), roleArn="arn:aws:iam::123456789012:role/x"
        )
    first = aws.deploy(clients, NAMES, "rate(1 day)", INPUT)["state_machine"]
    assert first not in [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    again = aws.deploy(clients, NAMES, "rate(1 day)", INPUT, glue_job="housing-etl")["state_machine"]
    assert again == first
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=first)["definition"])
    assert definition["States"]["PrepareData"]["Parameters"]["JobName"] == "housing-etl"
