"""The retraining state machine: valid Amazon States Language (statelint), a reviewed snapshot, retries
and catches on every task, the gate of each task on evaluation.json, one S3 layout from Evaluate to
Register; and its deployment against moto."""

import json
import os
import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from statelint.linter import Linter

from smray import gate, workflow
from smray import schema as schema_mod
from smray.errors import UserError
from smray.reporting.graph import state_machine_edges
from smray.schema import Task
from smray.workstation.retraining import aws, statemachine

SNAPSHOT = Path(__file__).parents[2] / "pipeline" / "retraining-statemachine.json"
INPUT = {
    "JobNamePrefix": "smray-housing",
    "DataUri": "s3://smray-example/input/",
    "SchemaUri": "s3://smray-example/schemas/housing/",
    "OutputBucket": "smray-example",
    "OutputPrefix": "retraining",
    "Threshold": 8000,
    "EndpointName": "housing",
    "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/smray:0.1.0",
    "RoleArn": "arn:aws:iam::123456789012:role/smray-sagemaker",
    "ProcessingInstanceType": "ml.m5.xlarge",
    "ProcessingInstanceCount": 2,
    "TrainingInstanceType": "ml.m5.xlarge",
    "TrainingInstanceCount": 2,
    "EndpointInstanceType": "ml.m5.large",
}
CHURN = schema_mod.parse(
    {
        "name": "churn",
        "target": "churned",
        "task": "binary",
        "positive": "yes",
        "features": [{"name": "state", "type": "string"}, {"name": "minutes", "type": "fractional"}],
    }
)
ACCURACY = gate.parse("accuracy >= 0.9", Task.BINARY)


def put_schema(s3, table: schema_mod.Schema | None = None, uri: str = INPUT["SchemaUri"]) -> None:
    """The table's schema.json (default housing's) in the SchemaUri folder (in moto's S3), where deploy and
    the jobs read it."""
    table = table or schema_mod.housing()
    bucket, _, folder = uri.removeprefix("s3://").partition("/")
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{folder}schema.json", Body=table.dumps().encode())


@pytest.mark.parametrize("glue_job", ["", "housing-etl"])
@pytest.mark.parametrize("rule", [None, ACCURACY, gate.parse("weighted_f1 >= 0.6", Task.MULTICLASS)])
def test_statelint_finds_nothing(glue_job, rule):
    assert Linter.validate(statemachine.build(glue_job, rule=rule)) == []
    broken = statemachine.build(glue_job)
    broken["States"]["Train"]["Next"] = "Nowhere"
    assert any("Nowhere" in p for p in Linter.validate(broken))  # the linter does catch real mistakes


def test_the_definition_matches_the_reviewed_snapshot():
    got = statemachine.render()
    if os.environ.get("SMRAY_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(got)
    assert got == SNAPSHOT.read_text(), (
        "definition changed: review it, then SMRAY_UPDATE_SNAPSHOTS=1 pytest ..."
    )


def test_every_task_retries_with_backoff_and_fails_the_execution_with_its_cause():
    states = statemachine.build()["States"]
    tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
    assert set(tasks) >= {
        "Ingest",
        "Preprocess",
        "Train",
        "Evaluate",
        "ReadEvaluation",
        "Register",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
    }
    for name, task in tasks.items():
        assert task["Retry"][0]["BackoffRate"] > 1, name
        assert task["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "WorkflowFailed"}
        ]
    assert states["WorkflowFailed"] == {
        "Type": "Fail",
        "Error": "RetrainingFailed",
        "CausePath": "$.error.Cause",
    }
    assert tasks["Train"]["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert tasks["Evaluate"]["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    assert tasks["ReadEvaluation"]["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject"
    assert tasks["Register"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createModelPackage"
    order = ["Train", "Evaluate", "ReadEvaluation", "MetricReported"]
    assert [states[name]["Next"] for name in order[:-1]] == order[1:]
    assert states["Register"]["Next"] == "CreateModel"


@pytest.mark.parametrize(
    ("rule", "path", "comparison", "error", "side"),
    [
        (
            None,  # the default: the housing table's regression gate
            "$.evaluation.json.regression_metrics.rmse.value",
            "NumericLessThanEqualsPath",
            "MetricAboveThreshold",
            "above",
        ),
        (
            ACCURACY,
            "$.evaluation.json.binary_classification_metrics.accuracy.value",
            "NumericGreaterThanEqualsPath",
            "MetricBelowThreshold",
            "below",
        ),
        (
            gate.parse("logloss <= 0.7", Task.MULTICLASS),
            "$.evaluation.json.multiclass_classification_metrics.logloss.value",
            "NumericLessThanEqualsPath",
            "MetricAboveThreshold",
            "above",
        ),
    ],
)
def test_the_gate_reads_its_metric_from_evaluation_json_in_its_direction(rule, path, comparison, error, side):
    states = statemachine.build(rule=rule)["States"]
    reported = states["MetricReported"]["Choices"]
    assert reported[0] == {"Not": {"Variable": path, "IsPresent": True}, "Next": "MetricMissing"}
    assert reported[1] == {"Variable": path, "IsNumeric": True, "Next": "PickMetric"}
    assert states["PickMetric"]["Parameters"]["value.$"] == path
    (choice,) = states["MetricWithinThreshold"]["Choices"]
    assert choice == {"Variable": "$.evaluation.value", comparison: "$.Threshold", "Next": "Register"}
    assert states["MetricWithinThreshold"]["Default"] == "MetricMissed"
    assert states["MetricMissed"]["Error"] == error
    assert f"is {side} the threshold" in states["MetricMissed"]["CausePath"]
    assert states["Defaults"]["Result"]["Threshold"] == (rule or gate.default(Task.REGRESSION)).threshold
    assert set(states["Defaults"]["Result"]) == set(statemachine.DEFAULTED_INPUT)


def test_the_training_job_charts_the_task_s_metrics():
    def charted(rule):
        train = statemachine.build(rule=rule)["States"]["Train"]["Parameters"]
        return {d["Name"] for d in train["AlgorithmSpecification"]["MetricDefinitions"]}

    assert "validation:rmse" in charted(None)
    assert "validation:auc" in charted(ACCURACY) and "validation:rmse" not in charted(ACCURACY)


def test_one_s3_layout_from_preprocess_to_evaluate_to_register():
    """Evaluate reads the test split Preprocess wrote and the model Train made; ReadEvaluation and Register
    name the evaluation.json that Evaluate writes, in the same bucket."""
    states = statemachine.build()["States"]
    outputs = {
        o["OutputName"]: o["S3Output"]["S3Uri.$"]
        for o in states["Preprocess"]["Parameters"]["ProcessingOutputConfig"]["Outputs"]
    }
    evaluate = states["Evaluate"]["Parameters"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri.$"] for i in evaluate["ProcessingInputs"]}
    assert inputs == {"model": "$.training.ModelDataUrl", "test": outputs["test"]}
    assert states["Train"]["ResultSelector"] == {"ModelDataUrl.$": "$.ModelArtifacts.S3ModelArtifacts"}
    (written,) = evaluate["ProcessingOutputConfig"]["Outputs"]
    folder = "States.Format('s3://{}/{}/evaluation', $.OutputBucket, $.names.key)"
    assert written["S3Output"]["S3Uri.$"] == folder
    assert states["ReadEvaluation"]["Parameters"] == {
        "Bucket.$": "$.OutputBucket",
        "Key.$": "States.Format('{}/evaluation/evaluation.json', $.names.key)",
    }
    statistics = states["Register"]["Parameters"]["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics == {
        "ContentType": "application/json",
        "S3Uri.$": "States.Format('s3://{}/{}/evaluation/evaluation.json', $.OutputBucket, $.names.key)",
    }
    names = states["Names"]["Parameters"]
    assert names["key.$"] == "States.Format('{}/{}', $.OutputPrefix, $$.Execution.Name)"
    assert "ContainerArguments" not in evaluate["AppSpecification"]  # SageMaker refuses an empty list
    assert evaluate["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1  # evaluate: the head only


def test_an_execution_runs_no_longer_than_its_steps_limits_together():
    definition = statemachine.build()
    train = definition["States"]["Train"]["Parameters"]["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert train == 86_400  # the pipeline's training limit
    processing = [
        s["Parameters"]["StoppingCondition"]["MaxRuntimeInSeconds"]
        for s in definition["States"].values()
        if s.get("Resource", "").endswith("createProcessingJob.sync")
    ]
    polls = 2 * statemachine.ENDPOINT_POLLS * statemachine.ENDPOINT_POLL_S
    assert definition["TimeoutSeconds"] == sum(processing) + train + polls == 104_400
    assert statemachine.build(spot_max_wait_s=100_000)["TimeoutSeconds"] == 104_400 - 86_400 + 100_000
    glue = statemachine.build("housing-etl")["States"]["PrepareData"]["Parameters"]["Timeout"]
    assert glue * 60 == 2 * statemachine.PROCESSING_MAX_RUN_S  # minutes: Ingest's and Preprocess's


@pytest.mark.parametrize("glue_job", ["", "housing-etl"])
def test_tasks_retry_only_throttling_and_transient_errors(glue_job):
    """`SageMaker.AmazonSageMakerException` names every SageMaker error, validation errors included:
    retrying it re-sends a bad request for minutes and then fails on a duplicate job name."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    modelled = {n for n in model.shape_names if model.shape_for(n).metadata.get("exception")}
    for name, state in statemachine.build(glue_job)["States"].items():
        if state["Type"] != "Task":
            continue
        retrier, *generic = state["Retry"]
        if state["Resource"].startswith("arn:aws:states:::sagemaker:"):  # every error's name there
            assert [r["ErrorEquals"] for r in generic] == [["SageMaker.AmazonSageMakerException"]], name
            assert generic[0]["MaxAttempts"] * generic[0]["IntervalSeconds"] <= 30  # not minutes
        else:
            assert generic == [], name
        assert retrier["ErrorEquals"] == [
            "ThrottlingException",
            "SageMaker.ThrottlingException",
            "SageMaker.InternalFailureException",
            "SageMaker.ServiceUnavailableException",
        ], name
        retried = {e.removeprefix("SageMaker.").removesuffix("Exception") for e in retrier["ErrorEquals"]}
        assert not retried & {m.removesuffix("Exception") for m in modelled}  # ResourceInUse, Conflict...


def test_glue_prepares_the_data_when_named():
    states = statemachine.build("housing-etl")["States"]
    assert "Ingest" not in states
    assert states["PrepareData"]["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert states["PrepareData"]["Parameters"]["JobName"] == "housing-etl"


def test_the_graph_follows_every_branch():
    edges = {(e.source, e.target, e.label) for e in state_machine_edges(statemachine.build())}
    assert ("MetricReported", "MetricMissing", "yes") in edges
    assert ("MetricWithinThreshold", "Register", "yes") in edges
    assert ("MetricWithinThreshold", "MetricMissed", "no") in edges
    assert ("CreateOrUpdate", "AwaitIdle", "yes") in edges
    assert ("IsIdle", "UpdateEndpoint", "yes") in edges
    assert ("CreateOrUpdate", "CreateEndpoint", "no") in edges
    assert ("IsInService", "Deployed", "yes") in edges
    assert ("Train", "WorkflowFailed", "catch") in edges


def test_the_pictured_graph_drops_only_the_polls_way_back():
    from smray.reporting.graph import Edge
    from smray.workstation.commands.retraining import _without_loops

    edges = state_machine_edges(statemachine.build())
    kept = _without_loops(edges, statemachine.build()["StartAt"])
    assert set(edges) - set(kept) == {Edge("CountIdle", "PollIdle"), Edge("CountInService", "PollInService")}


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


def deployed_definition(clients, arn: str) -> dict:
    return json.loads(clients["stepfunctions"].describe_state_machine(stateMachineArn=arn)["definition"])


def test_deploy_creates_then_updates_roles_state_machine_and_schedule(clients):
    names = aws.Names(account="123456789012", region="us-east-1")
    first = aws.deploy(clients, names, "rate(1 day)", INPUT)
    second = aws.deploy(clients, names, "cron(0 3 ? * MON-FRI *)", INPUT)
    assert first["state_machine"] == second["state_machine"]
    assert len(clients["stepfunctions"].list_state_machines()["stateMachines"]) == 1
    rule = clients["events"].describe_rule(Name=names.rule)
    assert rule["ScheduleExpression"] == "cron(0 3 ? * MON-FRI *)"
    (target,) = clients["events"].list_targets_by_rule(Rule=names.rule)["Targets"]
    assert target["Arn"] == first["state_machine"] and json.loads(target["Input"]) == INPUT
    policy = clients["iam"].get_role_policy(RoleName=names.schedule_role, PolicyName=names.schedule_role)
    assert policy["PolicyDocument"]["Statement"][0]["Resource"] == first["state_machine"]
    workflow = clients["iam"].get_role_policy(RoleName=names.workflow_role, PolicyName=names.workflow_role)
    resources = [
        r
        for s in workflow["PolicyDocument"]["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert resources.count("*") == 1  # ListEndpoints only
    assert "arn:aws:sagemaker:us-east-1:123456789012:training-job/smray-housing-*" in resources
    assert "arn:aws:sagemaker:us-east-1:123456789012:model-package/housing/*" in resources  # Register
    assert "arn:aws:s3:::smray-example/retraining/*/evaluation/evaluation.json" in resources
    groups = clients["sagemaker"].list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in groups] == ["housing"]  # the table's name, created once
    assert first["model_package_group"] == second["model_package_group"] == groups[0]["ModelPackageGroupArn"]
    definition = deployed_definition(clients, first["state_machine"])
    assert definition == statemachine.build(rule=gate.parse("rmse <= 8000", Task.REGRESSION))

    execution = aws.start(clients["stepfunctions"], first["state_machine"], INPUT, "manual-1")
    assert execution.endswith(":manual-1")
    listed = aws.executions(clients["stepfunctions"], first["state_machine"])
    assert [e["name"] for e in listed] == ["manual-1"]


NO_PREFIX = "OutputPrefix .* is not a key prefix: .* without a leading or trailing '/'"


@pytest.mark.parametrize(
    ("schedule", "bad_input", "gate_text", "message"),
    [
        ("rate(5 minute)", {}, "", "singular exactly for 1"),
        ("rate(1 day)", {"Threshold": "low"}, "", "Threshold must be a finite number above 0, got 'low'"),
        (
            "rate(1 day)",
            {"Threshold": float("nan")},
            "",
            "Threshold must be a finite number above 0, got nan",
        ),
        ("rate(1 day)", {"OutputBucket": "My_Bucket"}, "", "OutputBucket 'My_Bucket' is not an S3 bucket"),
        ("rate(1 day)", {"OutputBucket": "s3://smray-example"}, "", "OutputBucket .* is not an S3 bucket"),
        ("rate(1 day)", {"OutputPrefix": "/retraining"}, "", NO_PREFIX),
        ("rate(1 day)", {"OutputPrefix": "retraining/"}, "", NO_PREFIX),
        ("rate(1 day)", {"OutputPrefix": "a//b"}, "", NO_PREFIX),
        ("rate(1 day)", {"OutputPrefix": ""}, "", NO_PREFIX),
        ("rate(1 day)", {"OutputPrefix": "a/*"}, "", NO_PREFIX),  # a wildcard in the role's policy
        ("rate(1 day)", {"ModelPackageGroupName": "../x"}, "", "ModelPackageGroupName '../x' is not a valid"),
        ("rate(1 day)", {"SchemaUri": "s3://smray-example/nowhere/"}, "", "no s3://smray-example/nowhere/"),
        ("rate(1 day)", {"SchemaUri": "/home/me/schema/"}, "", "SchemaUri '/home/me/schema/' is not an S3"),
        ("rate(1 day)", {}, "accuracy >= 0.9", "a regression model's metrics are rmse, mae, mape, r2"),
        ("rate(1 day)", {}, "rmse >= 10", "a lower rmse is better, so the gate is rmse <= ..."),
        ("rate(1 day)", {"Threshold": 9000}, "rmse <= 8000", "Threshold 9000 contradicts --gate"),
        ("rate(1 day)", {"Threshold": 5}, "r2 >= 0.5", "Threshold 5 contradicts --gate"),
        ("rate(1 day)", {"Threshold": 5}, "r2 >= 5", "the gate r2 >= 5 can never pass: .* at most 1"),
    ],
)
def test_bad_deploys_are_refused_before_anything_is_created(clients, schedule, bad_input, gate_text, message):
    names = aws.Names(account="123456789012", region="us-east-1")
    with pytest.raises(UserError, match=message) as refused:
        aws.deploy(clients, names, schedule, {**INPUT, **bad_input}, gate_text=gate_text)
    assert "\n" not in str(refused.value)
    assert clients["stepfunctions"].list_state_machines()["stateMachines"] == []
    assert clients["sagemaker"].list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    assert clients["iam"].list_roles()["Roles"] == []


@pytest.mark.parametrize("bad", [{"OutputPrefix": "/x"}, {"OutputBucket": "x"}, {"Threshold": 0}])
def test_start_refuses_the_same_inputs(clients, bad):
    with pytest.raises(UserError, match=next(iter(bad))):
        aws.start(
            clients["stepfunctions"], "arn:aws:states:us-east-1:123456789012:stateMachine:x", INPUT | bad, "m"
        )


def test_a_classifier_is_gated_on_its_own_metric_with_its_defaults(clients):
    """A binary table's schema at SchemaUri: the gate `accuracy >= 0.9` (the AWS blog's), Threshold and the
    model package group left to their defaults, the gate's number and the table's name."""
    put_schema(clients["s3"], CHURN, "s3://smray-example/schemas/churn/")
    given = {k: v for k, v in INPUT.items() if k != "Threshold"} | {
        "SchemaUri": "s3://smray-example/schemas/churn/"
    }
    names = aws.Names(account="123456789012", region="us-east-1")
    made = aws.deploy(clients, names, "rate(1 day)", given, gate_text="accuracy >= 0.9")
    definition = deployed_definition(clients, made["state_machine"])
    assert definition == statemachine.build(rule=ACCURACY, group="churn")
    assert definition["States"]["Defaults"]["Result"] == {
        **{name: workflow.default(name) for name in statemachine.WORKFLOW_INPUT},
        "Threshold": 0.9,
        "ModelPackageGroupName": "churn",
    }
    assert made["model_package_group"].endswith(":model-package-group/churn")
    (target,) = clients["events"].list_targets_by_rule(Rule=names.rule)["Targets"]
    assert json.loads(target["Input"]) == given  # the input as given: the definition supplies the defaults
    again = aws.deploy(clients, names, "rate(1 day)", given)  # no --gate: the binary task's default
    assert again["model_package_group"] == made["model_package_group"]
    rule = gate.default(Task.BINARY)
    assert deployed_definition(clients, again["state_machine"]) == statemachine.build(
        rule=rule, group="churn"
    )


def test_the_cli_deploys_starts_and_lists_against_moto(clients, tmp_path, capsys):
    from smray.workstation import cli

    (tmp_path / "input.json").write_text(json.dumps(INPUT))
    deploy = ["retraining", "deploy", "--schedule", "rate(7 days)", "--input", str(tmp_path / "input.json")]
    for argv in (
        [*deploy, "--gate", "rmse <= 8000"],
        ["retraining", "start", "--input", str(tmp_path / "input.json")],
        ["retraining", "executions"],
    ):
        args = cli.parse(argv)
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "state_machine       arn:aws:states:us-east-1:123456789012:stateMachine:smray-retraining" in out
    assert "model_package_group arn:aws:sagemaker:us-east-1:123456789012:model-package-group/housing" in out
    assert "execution started: arn:aws:states" in out
    assert "manual-" in out.splitlines()[-1]


def test_render_draws_the_graph(tmp_path, capsys):
    from smray.workstation import cli

    args = cli.parse(["retraining", "render", "--graph", str(tmp_path / "states.png")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == statemachine.build()
    assert (tmp_path / "states.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_takes_the_table_s_schema_and_a_gate(tmp_path, capsys):
    from smray.workstation import cli

    (tmp_path / "churn.json").write_text(CHURN.dumps())
    render = ["retraining", "render", "--schema", str(tmp_path / "churn.json")]
    args = cli.parse([*render, "--gate", "accuracy >= 0.9"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == statemachine.build(rule=ACCURACY, group="churn")
    args = cli.parse([*render, "--gate", "rmse <= 5"])
    with pytest.raises(UserError, match="a binary model's metrics are accuracy"):
        args.func(args)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"NumRound": 0}, "NumRound must be a whole number of at least 1"),
        ({"TuningTrials": 2.5}, "TuningTrials must be a whole number"),
        ({"NumRound": 10**9}, "hyper-parameter num_round=1000000000: outside the allowed range"),
        ({"ProcessingInstanceCount": "2"}, "ProcessingInstanceCount must be a whole number"),
    ],
)
def test_the_workflow_s_numbers_in_an_input_are_checked_before_anything_runs(given, message):
    example = json.loads((SNAPSHOT.parent / "retraining-input.example.json").read_text())
    with pytest.raises(UserError, match=re.escape(message)):
        aws.check_input(example | given)


def test_the_example_input_is_complete():
    example = json.loads((SNAPSHOT.parent / "retraining-input.example.json").read_text())
    aws.check_input(example)
    assert set(example) == set(statemachine.INPUT)  # the optional keys too, to show them


def test_training_checkpoints_under_the_execution_and_spot_is_an_option():
    train = statemachine.build()["States"]["Train"]["Parameters"]
    assert train["CheckpointConfig"] == {
        "S3Uri.$": "States.Format('s3://{}/{}/checkpoints', $.OutputBucket, $.names.key)"
    }
    assert "EnableManagedSpotTraining" not in train
    spot = statemachine.build(spot_max_wait_s=90_000)["States"]["Train"]["Parameters"]
    assert spot["EnableManagedSpotTraining"] is True
    assert spot["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 90000}
    assert Linter.validate(statemachine.build(spot_max_wait_s=90_000)) == []
    with pytest.raises(UserError, match="shorter than the training job's maximum run of 86400 s"):
        statemachine.build(spot_max_wait_s=20_000)
