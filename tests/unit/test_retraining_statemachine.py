"""The retraining state machine: valid Amazon States Language (statelint), a reviewed snapshot, retries
and catches on every task, the metric picked by name; and its deployment against moto."""

import json
import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from statelint.linter import Linter

from smray.errors import UserError
from smray.reporting.graph import state_machine_edges
from smray.workstation.retraining import aws, statemachine

SNAPSHOT = Path(__file__).parents[2] / "pipeline" / "retraining-statemachine.json"
# statelint's path grammar has no filter expressions; Step Functions' JSONPath does. Only this one
# problem is allowed, and only for the one Parameters that selects the metric by name.
FILTER_GAP = 'Field "values.$" of Parameters at "State Machine.States.SelectMetric" is not a JSONPath'
INPUT = {
    "JobNamePrefix": "smray-housing",
    "DataUri": "s3://smray-example/input/",
    "SchemaUri": "s3://smray-example/schemas/housing/",
    "OutputUri": "s3://smray-example/retraining",
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


@pytest.mark.parametrize("glue_job", ["", "housing-etl"])
def test_statelint_finds_nothing_but_its_own_filter_gap(glue_job):
    problems = Linter.validate(statemachine.build(glue_job))
    assert all(p.startswith(FILTER_GAP) for p in problems), problems
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
        "ReadMetric",
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
    assert tasks["ReadMetric"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
    assert "MetricName == 'validation:rmse'" in states["SelectMetric"]["Parameters"]["values.$"]
    choice = states["MetricWithinThreshold"]
    assert choice["Choices"][0]["NumericLessThanEqualsPath"] == "$.Threshold"
    assert choice["Default"] == "MeasureMiss" and states["MeasureMiss"]["Next"] == "MetricMissed"
    assert "is above the threshold" in states["MetricMissed"]["CausePath"]


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
    assert ("MetricWithinThreshold", "CreateModel", "yes") in edges
    assert ("MetricWithinThreshold", "MeasureMiss", "no") in edges
    assert ("CreateOrUpdate", "AwaitIdle", "yes") in edges
    assert ("IsIdle", "UpdateEndpoint", "yes") in edges
    assert ("CreateOrUpdate", "CreateEndpoint", "no") in edges
    assert ("IsInService", "Deployed", "yes") in edges
    assert ("Train", "WorkflowFailed", "catch") in edges


def test_the_pictured_graph_drops_only_the_polls_way_back():
    from smray.reporting.graph import Edge
    from smray.workstation.commands.retraining import _without_loops

    edges = state_machine_edges(statemachine.build())
    kept = _without_loops(edges, "Names")
    assert set(edges) - set(kept) == {Edge("CountIdle", "PollIdle"), Edge("CountInService", "PollInService")}


@pytest.fixture
def clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield {s: boto3.client(s, region_name="us-east-1") for s in ("iam", "stepfunctions", "events")}


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

    execution = aws.start(clients["stepfunctions"], first["state_machine"], INPUT, "manual-1")
    assert execution.endswith(":manual-1")
    listed = aws.executions(clients["stepfunctions"], first["state_machine"])
    assert [e["name"] for e in listed] == ["manual-1"]


@pytest.mark.parametrize(
    ("schedule", "bad_input", "message"),
    [
        ("rate(5 minute)", {}, "singular exactly for 1"),
        ("rate(1 day)", {"Threshold": "low"}, "Threshold must be a finite number above 0, got 'low'"),
        ("rate(1 day)", {"Threshold": float("nan")}, "Threshold must be a finite number above 0, got nan"),
    ],
)
def test_bad_deploys_are_refused_before_anything_is_created(clients, schedule, bad_input, message):
    names = aws.Names(account="123456789012", region="us-east-1")
    with pytest.raises(UserError, match=message):
        aws.deploy(clients, names, schedule, {**INPUT, **bad_input})
    assert clients["stepfunctions"].list_state_machines()["stateMachines"] == []


def test_the_cli_deploys_starts_and_lists_against_moto(clients, tmp_path, capsys):
    from smray.workstation import cli

    (tmp_path / "input.json").write_text(json.dumps(INPUT))
    for argv in (
        ["retraining", "deploy", "--schedule", "rate(7 days)", "--input", str(tmp_path / "input.json")],
        ["retraining", "start", "--input", str(tmp_path / "input.json")],
        ["retraining", "executions"],
    ):
        args = cli.parse(argv)
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "state_machine  arn:aws:states:us-east-1:123456789012:stateMachine:smray-retraining" in out
    assert "execution started: arn:aws:states" in out
    assert "manual-" in out.splitlines()[-1]


def test_render_draws_the_graph(tmp_path, capsys):
    from smray.workstation import cli

    args = cli.parse(["retraining", "render", "--graph", str(tmp_path / "states.png")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["StartAt"] == "Names"
    assert (tmp_path / "states.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_example_input_is_complete():
    example = json.loads((SNAPSHOT.parent / "retraining-input.example.json").read_text())
    aws.check_input(example)
    assert set(example) == set(statemachine.REQUIRED_INPUT)


def test_training_checkpoints_under_the_execution_and_spot_is_an_option():
    train = statemachine.build()["States"]["Train"]["Parameters"]
    assert train["CheckpointConfig"] == {
        "S3Uri.$": "States.Format('{}/{}/checkpoints', $.OutputUri, $$.Execution.Name)"
    }
    assert "EnableManagedSpotTraining" not in train
    spot = statemachine.build(spot_max_wait_s=20_000)["States"]["Train"]["Parameters"]
    assert spot["EnableManagedSpotTraining"] is True
    assert spot["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400, "MaxWaitTimeInSeconds": 20000}
    problems = Linter.validate(statemachine.build(spot_max_wait_s=20_000))
    assert all(p.startswith(FILTER_GAP) for p in problems), problems
    with pytest.raises(UserError, match="shorter than the training job's maximum run of 14400 s"):
        statemachine.build(spot_max_wait_s=3600)
