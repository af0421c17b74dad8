"""The AWS pipeline definition: its shape, a reviewed snapshot (pipeline/housing-aws.json), and the
upsert/start calls against moto."""

import json
import os
from pathlib import Path

import pytest
from moto import mock_aws

from smray import schema as schema_mod
from smray.contracts.train import metric_definitions
from smray.errors import UserError
from smray.reporting.graph import Edge, pipeline_edges
from smray.workstation import cli

SNAPSHOT = Path(__file__).parents[2] / "pipeline" / "housing-aws.json"
ARGS = [
    "--image",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/smray:0.1.0",
    "--role",
    "arn:aws:iam::123456789012:role/smray-sagemaker",
    "--bucket",
    "smray-example",
    "--region",
    "us-east-1",
]


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="smray-example")  # the user's own bucket
        yield


def test_a_bucket_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        args = cli.build_parser().parse_args(["run", "aws", *ARGS])
        with pytest.raises(UserError, match="bucket smray-example does not exist"):
            args.func(args)


def _definition(capsys) -> dict:
    assert (
        cli.build_parser()
        .parse_args(["pipeline", "show", *ARGS])
        .func(cli.build_parser().parse_args(["pipeline", "show", *ARGS]))
        == 0
    )
    return json.loads(capsys.readouterr().out)


def _normalized(definition: dict) -> str:
    """The Ray token is generated per upsert: the snapshot holds a placeholder."""
    text = json.dumps(definition, indent=2, sort_keys=True) + "\n"
    for step in definition["Steps"]:
        token = json.dumps(step).split('"SMRAY_RAY_TOKEN": "', 1)
        if len(token) == 2:
            text = text.replace(token[1].split('"', 1)[0], "<generated per upsert>")
    return text


def test_the_definition_has_the_workflow_s_shape(aws, capsys):
    d = _definition(capsys)
    assert [s["Name"] for s in d["Steps"]] == [
        "FeatureStoreIngestion",
        "PreprocessData",
        "HPTuning",
        "EvaluateModel",
        "CheckEvaluation",
    ]
    params = {p["Name"]: p for p in d["Parameters"]}
    assert params["Threshold"]["DefaultValue"] == 15000.0
    assert (
        params["TrainSize"]["DefaultValue"],
        params["ValidationSize"]["DefaultValue"],
        params["TestSize"]["DefaultValue"],
    ) == (0.6, 0.2, 0.2)
    for name in (
        "ProcessingInstanceCount",
        "TrainingInstanceCount",
        "FeatureGroupName",
        "InputDataUrl",
        "OutputUrl",
        "TuningTrials",
    ):
        assert name in params
    steps = {s["Name"]: s for s in d["Steps"]}
    images = {
        steps["FeatureStoreIngestion"]["Arguments"]["AppSpecification"]["ImageUri"],
        steps["HPTuning"]["Arguments"]["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"],
        steps["EvaluateModel"]["Arguments"]["AppSpecification"]["ImageUri"],
    }
    assert images == {ARGS[1]}  # one image for every step
    tuning = steps["HPTuning"]["Arguments"]
    assert (
        tuning["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    )
    assert tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize",
        "MetricName": "validation:rmse",
    }
    assert steps["EvaluateModel"]["PropertyFiles"][0]["FilePath"] == "evaluation.json"
    gate = steps["CheckEvaluation"]["Arguments"]
    (condition,) = gate["Conditions"]
    assert condition["Type"] == "LessThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == "regression_metrics.rmse.value"
    assert condition["RightValue"] == {"Get": "Parameters.Threshold"}
    assert [s["Name"] for s in gate["IfSteps"]] == ["RegisterTrainedModel-RegisterModel"]
    (fail,) = gate["ElseSteps"]
    assert fail["Type"] == "Fail" and "Threshold" in json.dumps(fail["Arguments"]["ErrorMessage"])
    register = gate["IfSteps"][0]["Arguments"]
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentType"] == "application/json"
    # no step is cached: a cache key holds input URIs, not the data under them (tests/aws proves it)
    assert not [s["Name"] for s in d["Steps"] if s.get("CacheConfig", {}).get("Enabled")]


def test_the_definition_matches_the_reviewed_snapshot(aws, capsys):
    got = _normalized(_definition(capsys))
    if os.environ.get("SMRAY_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(got)
    assert got == SNAPSHOT.read_text(), (
        "definition changed: review it, then SMRAY_UPDATE_SNAPSHOTS=1 pytest ..."
    )


def test_the_graph_has_both_branches_of_the_gate(aws, capsys):
    edges = pipeline_edges(_definition(capsys))
    assert Edge("FeatureStoreIngestion", "PreprocessData") in edges
    assert Edge("PreprocessData", "HPTuning") in edges
    assert Edge("HPTuning", "EvaluateModel") in edges
    assert Edge("CheckEvaluation", "RegisterTrainedModel-RegisterModel", "if") in edges
    assert Edge("CheckEvaluation", "GateFail", "else") in edges


def test_upsert_and_start_against_moto(aws, capsys):
    import boto3

    args = cli.build_parser().parse_args(["run", "aws", *ARGS, "--parameter", "Threshold=9000"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "execution started: arn:aws:sagemaker:us-east-1:" in out
    client = boto3.client("sagemaker", region_name="us-east-1")
    described = client.describe_pipeline(PipelineName="smray-housing")
    assert json.loads(described["PipelineDefinition"])["Steps"][0]["Name"] == "FeatureStoreIngestion"
    executions = client.list_pipeline_executions(PipelineName="smray-housing")["PipelineExecutionSummaries"]
    assert len(executions) == 1

    again = cli.build_parser().parse_args(["run", "aws", *ARGS, "--upsert-only"])
    assert again.func(again) == 0  # an update, not a second pipeline
    assert len(client.list_pipelines()["PipelineSummaries"]) == 1
    stored = boto3.client("s3").get_object(Bucket="smray-example", Key="smray/schemas/housing/schema.json")
    assert (
        schema_mod.parse(json.loads(stored["Body"].read())) == schema_mod.housing()
    )  # where SchemaUrl points


def test_a_user_s_own_table_names_its_feature_group_and_model_group(aws, capsys, tmp_path):
    table = schema_mod.parse(
        {
            "name": "churn",
            "target": "MONTHS",
            "features": [{"name": "CALLS"}, {"name": "PLAN", "type": "integral"}],
        }
    )
    (tmp_path / "churn.json").write_text(table.dumps())
    args = cli.build_parser().parse_args(["run", "aws", *ARGS, "--schema", str(tmp_path / "churn.json")])
    assert args.func(args) == 0
    import boto3

    definition = json.loads(
        boto3.client("sagemaker").describe_pipeline(PipelineName="smray-housing")["PipelineDefinition"]
    )
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert defaults["SchemaUrl"] == "s3://smray-example/smray/schemas/churn/"
    assert defaults["FeatureGroupName"] == "churn"
    assert '"ModelPackageGroupName": "churn"' in json.dumps(definition)  # registered under the table's name


def test_an_unknown_parameter_is_refused(aws):
    from smray.errors import UserError

    args = cli.build_parser().parse_args(["run", "aws", *ARGS, "--parameter", "RMSEThreshhold=1"])
    with pytest.raises(UserError, match="unknown pipeline parameter"):
        args.func(args)


def _training_definition(definition: dict) -> dict:
    (tuning,) = [s for s in definition["Steps"] if s["Type"] == "Tuning"]
    return tuning["Arguments"]["TrainingJobDefinition"]


def test_every_training_job_checkpoints_under_its_run_and_spot_is_an_option(aws, capsys):
    training = _training_definition(_definition(capsys))
    uri = training["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"]
    assert uri == [{"Get": "Parameters.OutputUrl"}, {"Get": "Execution.PipelineExecutionId"}, "checkpoints"]
    assert "EnableManagedSpotTraining" not in training

    spot = ["pipeline", "show", *ARGS, "--spot-max-wait", "90000"]
    assert cli.build_parser().parse_args(spot).func(cli.build_parser().parse_args(spot)) == 0
    training = _training_definition(json.loads(capsys.readouterr().out))
    assert training["EnableManagedSpotTraining"] is True
    assert training["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 90000}
    assert "CheckpointConfig" in training  # an interrupted spot job resumes from it

    short = ["pipeline", "show", *ARGS, "--spot-max-wait", "600"]
    with pytest.raises(UserError, match="shorter than the training job's maximum run of 86400 s"):
        cli.build_parser().parse_args(short).func(cli.build_parser().parse_args(short))
