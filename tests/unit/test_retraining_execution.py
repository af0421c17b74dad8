"""The retraining state machine's control flow, executed by moto's Step Functions engine.

moto cannot run `.sync` SageMaker jobs, has no UpdateEndpoint, and mis-reads a top-level "RoleArn.$" in
task parameters; those states are replaced by explicit fakes (named below), everything else runs as
written: the Names pass, the metric's checks and selection, the Choice on the threshold, the Fail states
and their causes, CreateModel, CreateEndpointConfig, ListEndpoints, CreateEndpoint and DescribeEndpoint
against moto's SageMaker, the create-or-update decision and the endpoint's polls. A task whose response
a test must choose (DescribeTrainingJob, or a DescribeEndpoint that moto would answer InService at once)
is a Pass state that reads that response from the execution input's `fake` and shapes it with the task's
own ResultSelector and ResultPath, as Step Functions shapes a real response.
"""

import copy
import json
import random
import time

import boto3
import pytest
from moto import mock_aws

from smray.workstation.retraining import statemachine

from .test_retraining_statemachine import INPUT

FAKE_MODEL = "s3://smray-example/retraining/model/model.tar.gz"
BASE = "smray-housing-scheduled-1"  # the execution's base name: JobNamePrefix and execution name


def described_job(metric: float | None, seed: int = 0) -> dict:
    """DescribeTrainingJob's response; a job that logged no metric has no FinalMetricDataList at all."""
    job = {"TrainingJobName": BASE, "TrainingJobStatus": "Completed"}
    if metric is not None:
        metrics = [("train:rmse", 100.0), ("validation:rmse", metric), ("validation:mae", 9.0)]
        random.Random(seed).shuffle(metrics)  # the order is not guaranteed
        job["FinalMetricDataList"] = [{"MetricName": n, "Value": v} for n, v in metrics]
    return job


def then(state: dict) -> dict:
    """Where a faked state goes on: its Next, or its End."""
    return {k: state[k] for k in ("Next", "End") if k in state}


def task_response(state: dict, key: str) -> dict:
    """fake: the task's response is the execution input's fake.<key>, shaped as the task shapes it."""
    fake = {"Type": "Pass", "InputPath": f"$.fake.{key}", "ResultPath": state["ResultPath"], **then(state)}
    if "ResultSelector" in state:
        fake["Parameters"] = state["ResultSelector"]
    return fake


def scripted_poll(state: dict, key: str, fields: list[str]) -> dict:
    """fake: the n-th DescribeEndpoint of a poll loop answers fake.<key>.<field>[n] for each field."""
    picks = {f"{f}.$": f"States.ArrayGetItem($.fake.{key}.{f}, $.poll.count)" for f in fields}
    return {"Type": "Pass", "Parameters": picks, "ResultPath": state["ResultPath"], **then(state)}


def with_fakes(
    metric: float | None, train_fails: bool = False, polls: dict[str, dict[str, list]] | None = None
) -> tuple[dict, dict]:
    """The definition with its fakes, and the execution input they read; `polls`: a poll state's scripted
    answers (PollIdle before the update, PollInService after the deploy)."""
    d = copy.deepcopy(statemachine.build())
    states = d["States"]
    for name in ("Ingest", "Preprocess"):  # fake: the processing jobs succeed
        states[name] = {"Type": "Pass", "ResultPath": None, "Next": states[name]["Next"]}
    if train_fails:  # fake: a training job that fails (the SDK call errors as a failed .sync job does)
        states["Train"]["Resource"] = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
        states["Train"]["Parameters"] = {"TrainingJobName": "smray-training-that-failed"}
        states["Train"].pop("ResultSelector")
    else:  # fake: the training job's result, as its ResultSelector shapes it
        states["Train"] = {
            "Type": "Pass",
            "Result": {"ModelDataUrl": FAKE_MODEL},
            "ResultPath": "$.training",
            "Next": "ReadMetric",
        }
    states["ReadMetric"] = task_response(states["ReadMetric"], "ReadMetric")
    # fake: moto has no UpdateEndpoint
    states["UpdateEndpoint"] = {"Type": "Pass", "ResultPath": None, **then(states["UpdateEndpoint"])}
    for name, answers in (polls or {}).items():
        states[name] = scripted_poll(states[name], name, list(answers))
    # moto leaves DescribeEndpoint's datetimes in the output, which its describe_execution cannot encode
    states["Deployed"]["OutputPath"] = "$.names"
    for state in states.values():
        if state["Type"] == "Wait":
            state["Seconds"] = 0  # the polls' 30 s, not waited here
    return d, {**INPUT, "fake": {"ReadMetric": described_job(metric), **(polls or {})}}


def execute(definition: dict, execution_input: dict) -> tuple[dict, list[str]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(
        name=f"retraining-{random.randrange(10**9)}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/smray-retraining-workflow",
    )["stateMachineArn"]
    execution = sfn.start_execution(
        stateMachineArn=arn, name="scheduled-1", input=json.dumps(execution_input)
    )
    for _ in range(300):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return described, entered


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("sagemaker", region_name="us-east-1")


def test_a_good_model_creates_the_endpoint_and_waits_until_it_serves(aws):
    described, entered = execute(*with_fakes(metric=7000.0))
    assert described["status"] == "SUCCEEDED", described
    assert entered[-8:] == [
        "FindEndpoint",
        "EndpointExists",
        "CreateOrUpdate",
        "CreateEndpoint",
        "AwaitInService",
        "PollInService",  # moto's DescribeEndpoint: InService with this execution's config
        "IsInService",
        "Deployed",
    ]
    config = aws.describe_endpoint(EndpointName="housing")["EndpointConfigName"]
    assert config == BASE  # the execution's own names
    model = aws.describe_model(ModelName=config)
    assert model["PrimaryContainer"]["ModelDataUrl"] == FAKE_MODEL


def existing_endpoint(sagemaker) -> None:
    sagemaker.create_model(
        ModelName="old", PrimaryContainer={"Image": INPUT["Image"]}, ExecutionRoleArn=INPUT["RoleArn"]
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "old", "InstanceType": "ml.m5.large"}
    sagemaker.create_endpoint_config(
        EndpointConfigName="old", ProductionVariants=[variant | {"InitialInstanceCount": 1}]
    )
    sagemaker.create_endpoint(EndpointName="housing", EndpointConfigName="old")
    sagemaker.create_endpoint(EndpointName="housing-canary", EndpointConfigName="old")  # only contains it


def test_a_good_model_updates_an_existing_endpoint_and_waits_until_it_serves(aws):
    existing_endpoint(aws)
    after = {"EndpointStatus": ["Updating", "InService"], "EndpointConfigName": ["old", BASE]}
    described, entered = execute(*with_fakes(metric=7000.0, polls={"PollInService": after}))
    assert described["status"] == "SUCCEEDED", described
    assert entered[entered.index("CreateOrUpdate") :] == [
        "CreateOrUpdate",
        "AwaitIdle",
        "PollIdle",  # moto's DescribeEndpoint: the old endpoint, InService
        "IsIdle",
        "UpdateEndpoint",
        "AwaitInService",
        *["PollInService", "IsInService", "WaitInService", "CountInService"],
        "PollInService",
        "IsInService",
        "Deployed",
    ]


def test_an_update_waits_while_the_endpoint_is_still_changing(aws):
    existing_endpoint(aws)
    before = {"EndpointStatus": ["Creating", "Updating", "InService"]}
    after = {"EndpointStatus": ["InService"], "EndpointConfigName": [BASE]}
    described, entered = execute(*with_fakes(7000.0, polls={"PollIdle": before, "PollInService": after}))
    assert described["status"] == "SUCCEEDED", described
    assert entered.count("WaitIdle") == 2 and entered.index("UpdateEndpoint") > entered.index("WaitIdle")


@pytest.mark.parametrize(
    ("polls", "cause"),
    [
        (  # SageMaker rolled the update back: the endpoint serves the old model
            {"EndpointStatus": ["Updating", "InService"], "EndpointConfigName": ["old", "old"]}
            | {"FailureReason": ["", "the primary container did not pass the ping health check"]},
            "endpoint housing is InService with config old, not smray-housing-scheduled-1: the primary "
            "container did not pass the ping health check",
        ),
        (
            {"EndpointStatus": ["Failed"], "EndpointConfigName": ["old"], "FailureReason": ["quota"]},
            "endpoint housing is Failed with config old, not smray-housing-scheduled-1: quota",
        ),
        (  # settled without a reason
            {"EndpointStatus": ["OutOfService"], "EndpointConfigName": ["old"]},
            "endpoint housing is OutOfService with config old, not smray-housing-scheduled-1",
        ),
    ],
)
def test_an_endpoint_that_does_not_serve_the_new_model_fails_with_its_reason(aws, polls, cause):
    existing_endpoint(aws)
    described, entered = execute(*with_fakes(metric=7000.0, polls={"PollInService": polls}))
    assert described["status"] == "FAILED" and entered[-2] == "IsInService"
    assert described["error"] == "EndpointNotServing" and described["cause"] == cause


def test_an_endpoint_that_never_settles_fails_after_an_hour_of_polls(aws):
    definition, execution_input = with_fakes(7000.0, polls={"PollIdle": {"EndpointStatus": ["Updating"] * 9}})
    for name in ("IsIdle", "IsInService"):
        (bound,) = [c for c in definition["States"][name]["Choices"] if c.get("Variable") == "$.poll.count"]
        assert (
            bound["NumericGreaterThanEquals"] * statemachine.build()["States"]["WaitIdle"]["Seconds"] == 3600
        )
        bound["NumericGreaterThanEquals"] = 3  # here: three polls
    existing_endpoint(aws)
    described, entered = execute(definition, execution_input)
    assert described["status"] == "FAILED" and "UpdateEndpoint" not in entered
    assert entered.count("PollIdle") == 4  # the first poll, then one after each of three waits
    assert described["error"] == "EndpointNotSettled"
    assert described["cause"] == "endpoint housing is still Updating after 3 waits of 30 s"


def test_a_model_above_the_threshold_fails_saying_by_how_much(aws):
    described, entered = execute(*with_fakes(metric=9102.5))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["MeasureMiss", "MetricMissed"] and "CreateModel" not in entered
    assert described["error"] == "MetricAboveThreshold"
    assert (
        described["cause"]
        == "validation:rmse 9102.5 is above the threshold 8000 by 1103: the endpoint was not changed"
    )
    assert aws.list_endpoints()["Endpoints"] == []


def test_a_metric_exactly_at_the_threshold_passes(aws):
    described, _ = execute(*with_fakes(metric=8000.0))
    assert described["status"] == "SUCCEEDED", described


def test_a_failed_training_job_fails_the_execution_with_its_cause(aws):
    described, entered = execute(*with_fakes(metric=7000.0, train_fails=True))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["Train", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert "smray-training-that-failed" in described["cause"]


def test_a_job_that_logged_no_metric_fails_the_execution_with_a_cause(aws):
    """DescribeTrainingJob's response then has no FinalMetricDataList: a path into it would raise
    States.Runtime, which no Catch (States.ALL included) handles."""
    described, entered = execute(*with_fakes(metric=None))
    assert described["status"] == "FAILED", described
    assert entered[-4:] == ["ReadMetric", "MetricListed", "NoMetric", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert described["cause"] == (
        "training job smray-housing-scheduled-1 reported no validation:rmse: the endpoint was not changed"
    )


@pytest.mark.parametrize("seed", range(3))
def test_the_metric_is_picked_by_name_whatever_the_order(aws, seed):
    definition, execution_input = with_fakes(metric=4321.0)
    execution_input["fake"]["ReadMetric"] = described_job(4321.0, seed)
    definition["States"]["PickMetric"] |= {"Next": "Done"}
    definition["States"]["Done"] = {"Type": "Succeed"}
    described, _ = execute(definition, execution_input)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["metric"] == {"name": "validation:rmse", "value": 4321.0}
