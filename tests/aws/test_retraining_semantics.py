"""The retraining state machine that `smray retraining deploy` creates, executed end to end with its real
jobs (tests.support.stepfunctions_sagemaker): moto's Step Functions engine runs the definition as deployed,
each `.sync` SageMaker task runs its job on the real image in SageMaker local mode, and S3, SageMaker's
control plane and the Feature Store runtime are the stand-ins the jobs' containers call. Deploy and start
are the CLI's own commands, with the input file the schedule sends. Small data: a few hundred rows; the
instance counts are 1. The Train job tunes as deployed (the definition fixes its hyper-parameters).

One execution runs in the module's fixture and is read by several tests; the failing ones run their own."""

import contextlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from smray import schema as schema_mod
from smray.workstation import cli, datagen
from smray.workstation.commands import run_aws
from smray.workstation.pipeline import local_mode
from tests.container.conftest import IMAGE
from tests.support.aws_standins import aws_stand_ins, process_environment
from tests.support.stepfunctions_sagemaker import Outcome, sagemaker_jobs_in_step_functions, wait_for

pytestmark = pytest.mark.docker

BUCKET = "smray-retraining"
ROWS = 300
EXECUTION_LIMIT_S = 900
INPUT = {  # pipeline/retraining-input.example.json, on the stand-ins, one instance each
    "JobNamePrefix": "smray-housing",
    "DataUri": f"s3://{BUCKET}/housing/raw/",
    "SchemaUri": f"s3://{BUCKET}/smray/schemas/housing/",
    "OutputBucket": BUCKET,
    "OutputPrefix": "smray/retraining",
    "Threshold": 90000,  # about the price's spread: a model must beat guessing the mean
    "ModelPackageGroupName": "housing",
    "EndpointName": "housing",
    "Image": IMAGE,
    "RoleArn": "arn:aws:iam::123456789012:role/smray-sagemaker",
    "ProcessingInstanceType": "ml.m5.xlarge",
    "ProcessingInstanceCount": 1,
    "TrainingInstanceType": "ml.m5.xlarge",
    "TrainingInstanceCount": 1,
    "NumRound": 60,
    "TuningTrials": 2,
    "EndpointInstanceType": "ml.m5.large",
}
JOBS = ("ingest", "preprocess", "evaluate")  # the Processing jobs' suffixes; the training job has none


class Deployed:
    """The stand-ins, the state machine as `smray retraining deploy` made it, and the jobs its tasks ran."""

    def __init__(self, endpoints, jobs, folder: Path) -> None:
        self.endpoints, self.jobs, self.folder = endpoints, jobs, folder
        self.sfn = endpoints.client("stepfunctions")
        self.s3 = endpoints.client("s3")
        self.sagemaker = endpoints.client("sagemaker")

    def smray(self, *argv: str) -> str:
        """`smray <argv>` as its user runs it; returns what it printed."""
        args = cli.parse([*argv, "--region", "us-east-1"])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert args.func(args) == 0
        return printed.getvalue()

    def start(self, label: str, **changes) -> tuple[Outcome, str]:
        """`smray retraining start --input <label>.json`, the input with `changes`; the ended execution and
        its name (the command names it)."""
        path = self.folder / f"{label}.json"
        path.write_text(json.dumps({**INPUT, **changes}))
        printed = self.smray("retraining", "start", "--input", str(path))
        arn = printed.removeprefix("execution started: ").strip()
        return wait_for(self.sfn, arn, EXECUTION_LIMIT_S), arn.rsplit(":", 1)[-1]

    def job(self, execution: str, suffix: str = ""):
        """The execution's training job, or its Processing job named with `suffix`."""
        base = f"{INPUT['JobNamePrefix']}-{execution}"
        return self.jobs.by_name[f"{base}-{suffix}" if suffix else base]

    def read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def packages(self) -> list[dict]:
        listed = self.sagemaker.list_model_packages(ModelPackageGroupName=INPUT["ModelPackageGroupName"])
        return [
            self.sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"])
            for p in listed["ModelPackageSummaryList"]
        ]


def _upload_raw(endpoints, folder: Path) -> None:
    datagen.generate(folder, rows=ROWS, files=1, fmt="csv", seed=1)
    for path in folder.iterdir():
        endpoints.client("s3").upload_file(str(path), BUCKET, f"housing/raw/{path.name}")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    local_mode.prepare_environment(tmp_path_factory.mktemp("home"))
    folder = tmp_path_factory.mktemp("retraining")
    with aws_stand_ins() as endpoints, sagemaker_jobs_in_step_functions(endpoints) as jobs:
        # the CLI's boto3 sessions reach the stand-ins for every service
        anywhere = {**endpoints.environment(), "AWS_ENDPOINT_URL": endpoints.s3_and_sagemaker}
        with process_environment(anywhere):
            endpoints.client("s3").create_bucket(Bucket=BUCKET)
            run_aws.upload_schema(BUCKET, schema_mod.housing(), endpoints.client("s3"))
            _upload_raw(endpoints, tmp_path_factory.mktemp("raw"))
            (folder / "input.json").write_text(json.dumps(INPUT))
            d = Deployed(endpoints, jobs, folder)
            d.smray(
                "retraining", "deploy", "--schedule", "rate(1 day)", "--input", str(folder / "input.json")
            )
            yield d


@pytest.fixture(scope="module")
def first(deployed):
    """One execution with the scheduled input: it must pass the gate."""
    return deployed.start("scheduled")


def test_an_execution_runs_the_real_jobs_and_deploys_the_model_that_passed_the_gate(deployed, first):
    outcome, execution = first
    assert outcome.described["status"] == "SUCCEEDED", outcome.described
    assert outcome.entered[outcome.entered.index("Ingest") :] == [
        "Ingest",
        "Preprocess",
        "Train",
        "Evaluate",
        "ReadEvaluation",
        "MetricReported",
        "PickMetric",
        "MetricWithinThreshold",
        "Register",
        "CreateModel",
        "CreateEndpointConfig",
        "FindEndpoint",
        "EndpointExists",
        "CreateOrUpdate",
        "CreateEndpoint",
        "AwaitInService",
        "PollInService",
        "IsInService",
        "Deployed",
    ]
    for suffix in ("", *JOBS):
        assert deployed.job(execution, suffix).status == "Completed"
    # the definition's metric definitions find the image's own log lines (what CloudWatch would chart)
    metrics = {m["MetricName"] for m in deployed.job(execution).described["FinalMetricDataList"]}
    assert metrics == {"train:rmse", "train:mae", "validation:rmse", "validation:mae"}
    # the input's rounds and trials, by the workflow's names, reach the training job as its own
    sent = deployed.job(execution).described["HyperParameters"]
    assert (sent["num_round"], sent["tune_trials"]) == ("60", "2")


def test_the_gate_reads_the_evaluation_the_evaluate_job_wrote(deployed, first):
    outcome, execution = first
    evaluate = deployed.job(execution, "evaluate").described
    (output,) = evaluate["ProcessingOutputConfig"]["Outputs"]
    written = json.loads(deployed.read(f"{output['S3Output']['S3Uri']}/evaluation.json"))
    picked = outcome.output_of("PickMetric")["evaluation"]
    assert picked == {"name": "RMSE", "value": written["regression_metrics"]["rmse"]["value"]}
    assert written["rows"] > 0 and picked["value"] <= INPUT["Threshold"]


def test_evaluate_scores_the_model_the_training_job_wrote(deployed, first):
    _, execution = first
    model = deployed.job(execution).described["ModelArtifacts"]["S3ModelArtifacts"]
    prefix = f"s3://{BUCKET}/{INPUT['OutputPrefix']}/{execution}/model"
    assert model == f"{prefix}/{INPUT['JobNamePrefix']}-{execution}/output/model.tar.gz"
    inputs = deployed.job(execution, "evaluate").described["ProcessingInputs"]
    assert {i["InputName"]: i["S3Input"]["S3Uri"] for i in inputs}["model"] == model


def test_the_registered_package_holds_the_trained_model_and_its_evaluation(deployed, first):
    outcome, execution = first
    (package,) = deployed.packages()
    model = deployed.job(execution).described["ModelArtifacts"]["S3ModelArtifacts"]
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["InferenceSpecification"]["Containers"] == [{"Image": IMAGE, "ModelDataUrl": model}]
    with tarfile.open(fileobj=io.BytesIO(deployed.read(model))) as archive:
        assert "model.json" in archive.getnames()  # a real model, where the training job wrote it
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert (
        json.loads(deployed.read(statistics))["regression_metrics"]["rmse"]["value"]
        == (outcome.output_of("PickMetric")["evaluation"]["value"])
    )
    assert package["MetadataProperties"]["GeneratedBy"] == outcome.described["executionArn"]


def test_the_endpoint_serves_the_execution_s_model(deployed, first):
    _, execution = first
    config = deployed.sagemaker.describe_endpoint(EndpointName=INPUT["EndpointName"])["EndpointConfigName"]
    assert config == f"{INPUT['JobNamePrefix']}-{execution}"
    container = deployed.sagemaker.describe_model(ModelName=config)["PrimaryContainer"]
    assert (
        container["ModelDataUrl"] == deployed.job(execution).described["ModelArtifacts"]["S3ModelArtifacts"]
    )
    assert container["Image"] == IMAGE


def test_a_job_that_fails_fails_the_execution_with_the_job_s_reason(deployed):
    """Raw data the image's ingest refuses: the .sync task fails with States.TaskFailed, its cause the
    job's description with SageMaker's FailureReason, and the Catch ends the execution with it."""
    deployed.s3.put_object(Bucket=BUCKET, Key="broken/raw/rows.csv", Body=b"not,a,housing\n1,2,3\n")
    outcome, execution = deployed.start("broken", DataUri=f"s3://{BUCKET}/broken/raw/")
    assert outcome.described["status"] == "FAILED"
    assert outcome.entered[-2:] == ["Ingest", "WorkflowFailed"]
    failed = [e["taskFailedEventDetails"] for e in outcome.events if "taskFailedEventDetails" in e]
    assert [f["error"] for f in failed] == ["States.TaskFailed"]
    cause = json.loads(outcome.described["cause"])
    assert cause["ProcessingJobStatus"] == "Failed"
    assert cause["ProcessingJobName"] == f"{INPUT['JobNamePrefix']}-{execution}-ingest"
    # the image's own words, from the job that ran
    assert cause["FailureReason"].endswith(
        "ERROR smray: FAILED: /opt/ml/processing/input/raw/rows.csv: missing column(s) PRICE, YEAR_BUILT, "
        "SQUARE_FEET, NUM_BEDROOMS, NUM_BATHROOMS, LOT_ACRES, GARAGE_SPACES, FRONT_PORCH, DECK (found: not, "
        "a, housing)"
    )
    assert outcome.described["error"] == "RetrainingFailed"
    assert not [
        p
        for p in deployed.packages()
        if p["MetadataProperties"]["GeneratedBy"] == outcome.described["executionArn"]
    ]


def test_a_threshold_the_real_model_cannot_meet_stops_at_the_gate(deployed, first):
    outcome, execution = deployed.start("strict", Threshold=1)
    assert outcome.described["status"] == "FAILED", outcome.described
    assert outcome.entered[-2:] == ["MetricWithinThreshold", "MetricMissed"]
    assert deployed.job(execution, "evaluate").status == "Completed"
    rmse = outcome.output_of("PickMetric")["evaluation"]["value"]
    assert outcome.described["error"] == "MetricAboveThreshold"
    assert outcome.described["cause"] == (
        f"RMSE {rmse} is above the threshold 1 on the test split: the endpoint was not changed"
    )
    assert len(deployed.packages()) == 1
    endpoint = deployed.sagemaker.describe_endpoint(EndpointName=INPUT["EndpointName"])
    assert endpoint["EndpointConfigName"] == f"{INPUT['JobNamePrefix']}-{first[1]}"
