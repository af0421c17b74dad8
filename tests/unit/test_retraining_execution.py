"""The retraining state machine's control flow, executed by moto's Step Functions engine.

moto cannot run `.sync` SageMaker jobs, has no UpdateEndpoint, and mis-reads a top-level "RoleArn.$" in
task parameters; those states are replaced by explicit fakes (named below), everything else runs as
written: the Names and PickMetric passes, the Choice on the threshold, the Fail states and their causes,
CreateModel, CreateEndpointConfig and ListEndpoints against moto's SageMaker, and the create-or-update
decision.
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


def with_fakes(metric: float | None, train_fails: bool = False) -> dict:
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
    # fake: DescribeTrainingJob's metric, as the ResultSelector's filter leaves it
    states["ReadMetric"] = {
        "Type": "Pass",
        "Result": {"values": [] if metric is None else [metric]},
        "ResultPath": "$.metric",
        "Next": states["ReadMetric"]["Next"],
    }
    # fake: moto has no UpdateEndpoint
    states["UpdateEndpoint"] = {
        "Type": "Pass",
        "Result": {"updated": True},
        "ResultPath": "$.update",
        "End": True,
    }
    return d


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


def test_a_good_model_creates_the_endpoint(aws):
    described, entered = execute(with_fakes(metric=7000.0), INPUT)
    assert described["status"] == "SUCCEEDED", described
    assert entered[-4:] == ["FindEndpoint", "EndpointExists", "CreateOrUpdate", "CreateEndpoint"]
    config = aws.describe_endpoint(EndpointName="housing")["EndpointConfigName"]
    assert config == "smray-housing-scheduled-1"  # the execution's own names
    model = aws.describe_model(ModelName=config)
    assert model["PrimaryContainer"]["ModelDataUrl"] == FAKE_MODEL


def test_a_good_model_updates_an_existing_endpoint(aws):
    aws.create_model(
        ModelName="old", PrimaryContainer={"Image": INPUT["Image"]}, ExecutionRoleArn=INPUT["RoleArn"]
    )
    aws.create_endpoint_config(
        EndpointConfigName="old",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "old",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    aws.create_endpoint(EndpointName="housing", EndpointConfigName="old")
    aws.create_endpoint(
        EndpointName="housing-canary", EndpointConfigName="old"
    )  # a name that only contains it
    described, entered = execute(with_fakes(metric=7000.0), INPUT)
    assert described["status"] == "SUCCEEDED", described
    assert entered[-2:] == ["CreateOrUpdate", "UpdateEndpoint"]
    assert json.loads(described["output"])["update"] == {"updated": True}


def test_a_model_above_the_threshold_fails_saying_by_how_much(aws):
    described, entered = execute(with_fakes(metric=9102.5), INPUT)
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["MeasureMiss", "MetricMissed"] and "CreateModel" not in entered
    assert described["error"] == "MetricAboveThreshold"
    assert (
        described["cause"]
        == "validation:rmse 9102.5 is above the threshold 8000 by 1103: the endpoint was not changed"
    )
    assert aws.list_endpoints()["Endpoints"] == []


def test_a_metric_exactly_at_the_threshold_passes(aws):
    described, _ = execute(with_fakes(metric=8000.0), INPUT)
    assert described["status"] == "SUCCEEDED", described


def test_a_failed_training_job_fails_the_execution_with_its_cause(aws):
    described, entered = execute(with_fakes(metric=7000.0, train_fails=True), INPUT)
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["Train", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert "smray-training-that-failed" in described["cause"]


def test_a_job_that_reported_no_metric_fails_the_execution_with_a_cause(aws):
    described, entered = execute(with_fakes(metric=None), INPUT)
    assert described["status"] == "FAILED"
    assert entered[-3:] == ["MetricReported", "NoMetric", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert described["cause"] == (
        "training job smray-housing-scheduled-1 reported no validation:rmse: the endpoint was not changed"
    )


def test_the_metric_is_picked_by_name_whatever_the_order(aws):
    """The real ReadMetric ResultSelector, run by moto's engine on a shuffled FinalMetricDataList."""
    selector = statemachine.build()["States"]["ReadMetric"]["ResultSelector"]
    metrics = [
        {"MetricName": n, "Value": v}
        for n, v in [
            ("train:rmse", 100.0),
            ("validation:rmse", 4321.0),
            ("validation:mae", 9.0),
            ("train:mae", 1.0),
        ]
    ]
    for seed in range(3):
        random.Random(seed).shuffle(metrics)
        d = {
            "StartAt": "Select",
            "States": {
                "Select": {
                    "Type": "Pass",
                    "Parameters": selector,
                    "InputPath": "$",
                    "ResultPath": "$.metric",
                    "Next": "Pick",
                },
                "Pick": statemachine.build()["States"]["PickMetric"] | {"End": True},
            },
        }
        d["States"]["Pick"].pop("Next")
        described, _ = execute(d, {"FinalMetricDataList": metrics})
        assert described["status"] == "SUCCEEDED", described
        assert json.loads(described["output"])["metric"] == {"name": "validation:rmse", "value": 4321.0}
