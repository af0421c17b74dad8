"""The retraining state machine's control flow, executed by moto's Step Functions engine.

moto cannot run `.sync` SageMaker jobs, has no UpdateEndpoint, and mis-reads a top-level "RoleArn.$" in
task parameters; those states are replaced by explicit fakes (named below), everything else runs as
written: the Defaults and Names passes, ReadEvaluation (S3 GetObject of evaluation.json from moto's S3,
parsed by States.StringToJson), the gate's checks and Choice, the Fail states and their causes, Register
(CreateModelPackage into moto's Model Registry), CreateModel, CreateEndpointConfig, ListEndpoints,
CreateEndpoint and DescribeEndpoint against moto's SageMaker, the create-or-update decision and the
endpoint's polls. The processing jobs' fakes are Pass states with the jobs' own Parameters, so each
request is resolved by the engine exactly as Step Functions would send it to SageMaker; Evaluate's fake
then writes the execution input's `fake.evaluation` as evaluation.json where the job would write it. A
task whose response a test must choose (a DescribeEndpoint that moto would answer InService at once) is a
Pass state that reads that response from the execution input's `fake`.

moto's engine leaves an AWS SDK task's streamed body (S3 GetObject's Body) a stream, where Step Functions
gives its text: the `aws` fixture reads it into text, as Step Functions does.
"""

import copy
import json
import random

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)

from smray import gate
from smray import schema as schema_mod
from smray.schema import Task
from smray.workstation.retraining import aws as deploying
from smray.workstation.retraining import statemachine
from tests.support.stepfunctions_sagemaker import read_streamed_bodies, wait_for

from .test_retraining_statemachine import ACCURACY, CHURN, INPUT

FAKE_MODEL = "s3://smray-example/retraining/model/model.tar.gz"
BASE = "smray-housing-scheduled-1"  # the execution's base name: JobNamePrefix and execution name
EXECUTION = "scheduled-1"
# where Evaluate writes evaluation.json for this execution: <OutputBucket>/<OutputPrefix>/<execution>/...
EVALUATION_KEY = f"{INPUT['OutputPrefix']}/{EXECUTION}/evaluation/evaluation.json"
EVALUATION_URI = f"s3://{INPUT['OutputBucket']}/{EVALUATION_KEY}"
SECTIONS = {"rmse": "regression_metrics", "accuracy": "binary_classification_metrics"}


def evaluation(**values: float | None) -> dict:
    """evaluation.json in its contract's shape, with the given metrics (a bootstrap deviation each)."""
    section = SECTIONS[next(iter(values))]
    metrics = {name: {"value": v, "standard_deviation": 0.01} for name, v in values.items()}
    if section == "binary_classification_metrics":
        metrics["confusion_matrix"] = {"no": {"no": 80, "yes": 5}, "yes": {"no": 8, "yes": 7}}
    return {section: metrics, "rows": 100}


def then(state: dict) -> dict:
    """Where a faked state goes on: its Next, or its End."""
    return {k: state[k] for k in ("Next", "End") if k in state}


def resolved_request(state: dict) -> dict:
    """fake: a job that succeeds; its request, resolved from the state's own Parameters, is kept in
    $.requests.<state> for the test to read (the real task discards the job's answer)."""
    return {"Type": "Pass", "Parameters": state["Parameters"], **then(state)}


def scripted_poll(state: dict, key: str, fields: list[str]) -> dict:
    """fake: the n-th DescribeEndpoint of a poll loop answers fake.<key>.<field>[n] for each field."""
    picks = {f"{f}.$": f"States.ArrayGetItem($.fake.{key}.{f}, $.poll.count)" for f in fields}
    return {"Type": "Pass", "Parameters": picks, "ResultPath": state["ResultPath"], **then(state)}


def with_fakes(
    written: dict | None,
    train_fails: bool = False,
    polls: dict[str, dict[str, list]] | None = None,
    rule: gate.GateRule | None = None,
    group: str = "",
) -> tuple[dict, dict]:
    """The definition (gate `rule`) with its fakes, and the execution input they read; `written`: the
    evaluation.json that Evaluate writes (None: it writes none); `polls`: a poll state's scripted answers
    (PollIdle before the update, PollInService after the deploy)."""
    d = copy.deepcopy(statemachine.build(rule=rule, group=group))
    states = d["States"]
    for name in ("Ingest", "Preprocess", "Evaluate"):
        states[name] = resolved_request(states[name]) | {"ResultPath": f"$.requests.{name}"}
    if written is not None:  # fake: the evaluate job's output, evaluation.json, uploaded to S3
        states["Evaluate"]["Next"] = "WriteEvaluation"
        states["WriteEvaluation"] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
            "Parameters": {
                "Bucket": INPUT["OutputBucket"],
                "Key": EVALUATION_KEY,
                "Body.$": "States.JsonToString($.fake.evaluation)",
            },
            "ResultPath": None,
            "Next": "ReadEvaluation",
        }
    if train_fails:  # fake: a training job that fails (the SDK call errors as a failed .sync job does)
        states["Train"]["Resource"] = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
        states["Train"]["Parameters"] = {"TrainingJobName": "smray-training-that-failed"}
        states["Train"].pop("ResultSelector")
    else:  # fake: the training job's result, as its ResultSelector shapes it
        states["Train"] = {
            "Type": "Pass",
            "Result": {"ModelDataUrl": FAKE_MODEL},
            "ResultPath": "$.training",
            **then(states["Train"]),
        }
    # fake: moto has no UpdateEndpoint
    states["UpdateEndpoint"] = {"Type": "Pass", "ResultPath": None, **then(states["UpdateEndpoint"])}
    for name, answers in (polls or {}).items():
        states[name] = scripted_poll(states[name], name, list(answers))
    # moto leaves DescribeEndpoint's datetimes in the output, which its describe_execution cannot encode
    states["Deployed"]["OutputPath"] = "$.requests"
    for state in states.values():
        if state["Type"] == "Wait":
            state["Seconds"] = 0  # the polls' 30 s, not waited here
    return d, {**INPUT, "fake": {"evaluation": written, **(polls or {})}}


def execute(definition: dict, execution_input: dict) -> tuple[dict, list[str]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(
        name=f"retraining-{random.randrange(10**9)}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/smray-retraining-workflow",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=EXECUTION, input=json.dumps(execution_input))
    outcome = wait_for(sfn, execution["executionArn"], timeout_s=30, poll_s=0.1)
    return outcome.described, outcome.entered


@pytest.fixture
def aws(monkeypatch):
    """moto's SageMaker, with the model package groups deploy creates (the housing table's and churn's),
    and its S3 with the output bucket."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    original = aws_sdk.StateTaskServiceAwsSdk._eval_service_task
    monkeypatch.setattr(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", read_streamed_bodies(original))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        for table in (CHURN, schema_mod.housing()):
            deploying.ensure_group(sagemaker, table.name, table)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=INPUT["OutputBucket"])
        yield sagemaker


def packages(sagemaker, group: str = "housing") -> list[dict]:
    listed = sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


def test_a_good_model_is_registered_then_creates_the_endpoint_and_waits_until_it_serves(aws):
    described, entered = execute(*with_fakes(evaluation(rmse=7000.0, mae=5000.0)))
    assert described["status"] == "SUCCEEDED", described
    assert entered[entered.index("Train") : entered.index("CreateModel") + 1] == [
        "Train",
        "Evaluate",
        "WriteEvaluation",  # the fake's upload
        "ReadEvaluation",
        "MetricReported",
        "PickMetric",
        "MetricWithinThreshold",
        "Register",
        "CreateModel",
    ]
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


def test_the_registered_package_holds_the_model_its_image_and_its_evaluation(aws):
    described, _ = execute(*with_fakes(evaluation(rmse=7000.0)))
    assert described["status"] == "SUCCEEDED", described
    (package,) = packages(aws)
    assert package["ModelApprovalStatus"] == "Approved"  # the workflow deploys what passes
    (container,) = package["InferenceSpecification"]["Containers"]
    assert container == {"Image": INPUT["Image"], "ModelDataUrl": FAKE_MODEL}
    assert package["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == ["ml.m5.large"]
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics == {"ContentType": "application/json", "S3Uri": EVALUATION_URI}
    stored = boto3.client("s3").get_object(Bucket=INPUT["OutputBucket"], Key=EVALUATION_KEY)
    assert json.loads(stored["Body"].read()) == evaluation(rmse=7000.0)  # the statistics name a real object
    assert (
        package["ModelPackageDescription"]
        == "retraining execution scheduled-1: RMSE 7000.0 on the test split"
    )
    assert package["MetadataProperties"]["GeneratedBy"] == described["executionArn"]


def test_evaluate_reads_what_preprocess_and_train_wrote_and_writes_where_the_gate_reads(aws):
    """The jobs' requests as Step Functions resolves them: Evaluate's test split is Preprocess's, its model
    is the training job's, and its output folder is where ReadEvaluation and Register find evaluation.json."""
    described, _ = execute(*with_fakes(evaluation(rmse=7000.0)))
    requests = json.loads(described["output"])
    evaluate, preprocess = requests["Evaluate"], requests["Preprocess"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["ProcessingInputs"]}
    written = {
        o["OutputName"]: o["S3Output"]["S3Uri"] for o in preprocess["ProcessingOutputConfig"]["Outputs"]
    }
    prefix = f"s3://smray-example/retraining/{EXECUTION}"
    assert (
        inputs == {"model": FAKE_MODEL, "test": written["test"]}
        and written["test"] == f"{prefix}/prepared/test"
    )
    (output,) = evaluate["ProcessingOutputConfig"]["Outputs"]
    assert f"{output['S3Output']['S3Uri']}/evaluation.json" == EVALUATION_URI
    assert evaluate["ProcessingJobName"] == f"{BASE}-evaluate"
    assert evaluate["AppSpecification"]["ContainerEntrypoint"] == ["smray-entrypoint", "evaluate"]


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


GOOD = evaluation(rmse=7000.0)


def test_a_good_model_updates_an_existing_endpoint_and_waits_until_it_serves(aws):
    existing_endpoint(aws)
    after = {"EndpointStatus": ["Updating", "InService"], "EndpointConfigName": ["old", BASE]}
    described, entered = execute(*with_fakes(GOOD, polls={"PollInService": after}))
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
    described, entered = execute(*with_fakes(GOOD, polls={"PollIdle": before, "PollInService": after}))
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
    described, entered = execute(*with_fakes(GOOD, polls={"PollInService": polls}))
    assert described["status"] == "FAILED" and entered[-2] == "IsInService"
    assert described["error"] == "EndpointNotServing" and described["cause"] == cause


def test_an_endpoint_that_never_settles_fails_after_an_hour_of_polls(aws):
    definition, execution_input = with_fakes(GOOD, polls={"PollIdle": {"EndpointStatus": ["Updating"] * 9}})
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


def test_a_model_above_the_threshold_fails_saying_so_and_registers_nothing(aws):
    described, entered = execute(*with_fakes(evaluation(rmse=9102.5)))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["MetricWithinThreshold", "MetricMissed"] and "Register" not in entered
    assert described["error"] == "MetricAboveThreshold"
    assert described["cause"] == (
        "RMSE 9102.5 is above the threshold 8000 on the test split: the endpoint was not changed"
    )
    assert aws.list_endpoints()["Endpoints"] == [] and packages(aws) == []


def test_a_metric_exactly_at_the_threshold_passes(aws):
    described, _ = execute(*with_fakes(evaluation(rmse=8000.0)))
    assert described["status"] == "SUCCEEDED", described


@pytest.mark.parametrize(
    ("accuracy", "threshold", "passes"),
    [(0.93, None, True), (0.9, None, True), (0.87, None, False), (0.87, 0.85, True), (0.93, 0.95, False)],
)
def test_a_classifier_is_gated_on_accuracy_both_ways(aws, accuracy, threshold, passes):
    """The AWS blog's gate, `accuracy >= 0.9`, on a binary table; Threshold left out is the gate's 0.9,
    and an execution input's Threshold overrides it."""
    definition, execution_input = with_fakes(
        evaluation(accuracy=accuracy, auc=0.8), rule=ACCURACY, group="churn"
    )
    execution_input = {
        k: v for k, v in execution_input.items() if k not in ("Threshold", "ModelPackageGroupName")
    }
    if threshold is not None:
        execution_input["Threshold"] = threshold
    described, entered = execute(definition, {**execution_input, "EndpointName": "churn"})
    if passes:
        assert described["status"] == "SUCCEEDED", described
        (package,) = packages(aws, "churn")  # the deployed default group: the table's name
        assert package["ModelPackageDescription"].endswith(f": accuracy {accuracy} on the test split")
        assert aws.describe_endpoint(EndpointName="churn")["EndpointConfigName"] == BASE
        return
    assert described["status"] == "FAILED" and entered[-1] == "MetricMissed"
    assert described["error"] == "MetricBelowThreshold"
    assert described["cause"] == (
        f"accuracy {accuracy} is below the threshold {threshold or 0.9} on the test split: the endpoint "
        "was not changed"
    )
    assert packages(aws, "churn") == [] and aws.list_endpoints()["Endpoints"] == []


@pytest.mark.parametrize(
    ("written", "rule"),
    [
        (evaluation(accuracy=0.95), None),  # a classifier's evaluation, judged on rmse
        ({"regression_metrics": {"rmse": {"standard_deviation": 3.0}}, "rows": 10}, None),
        ({"regression_metrics": {"rmse": {"value": None}}, "rows": 10}, None),
        (evaluation(rmse=7000.0), gate.parse("auc >= 0.8", Task.BINARY)),
    ],
)
def test_an_evaluation_without_the_gate_s_metric_fails_with_its_own_cause(aws, written, rule):
    """A Choice on an absent path would fail with States.Runtime, which no Catch handles."""
    described, entered = execute(*with_fakes(written, rule=rule))
    assert described["status"] == "FAILED", described
    assert entered[-2:] == ["MetricReported", "MetricMissing"]
    path, metric = (rule.path, rule.metric) if rule else ("regression_metrics.rmse.value", "rmse")
    assert described["error"] == "MetricMissing"
    assert described["cause"] == (
        f"{EVALUATION_URI} has no number at {path}: the gate on {metric} cannot decide, the endpoint was not "
        "changed"
    )
    assert packages(aws) == [] and aws.list_endpoints()["Endpoints"] == []


def test_an_evaluate_job_that_wrote_no_evaluation_fails_the_execution_with_s3_s_cause(aws):
    described, entered = execute(*with_fakes(None))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["ReadEvaluation", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert described["cause"].startswith("The specified key does not exist. (Service: s3, Status Code: 404")


def test_a_group_that_does_not_exist_fails_registration_with_its_cause(aws):
    definition, execution_input = with_fakes(GOOD)
    described, entered = execute(definition, {**execution_input, "ModelPackageGroupName": "nowhere"})
    assert described["status"] == "FAILED" and entered[-2:] == ["Register", "WorkflowFailed"]
    assert "Model Package Group does not exist" in described["cause"]
    assert aws.list_endpoints()["Endpoints"] == []


def test_a_failed_training_job_fails_the_execution_with_its_cause(aws):
    described, entered = execute(*with_fakes(GOOD, train_fails=True))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["Train", "WorkflowFailed"]
    assert described["error"] == "RetrainingFailed"
    assert "smray-training-that-failed" in described["cause"]
