"""The pipeline that `smray run aws` upserts, executed with SageMaker's rules
(tests.support.sagemaker_pipeline): every job on the real image in SageMaker local mode, S3 and SageMaker's
control plane on moto's server, the Feature Store runtime on a stand-in that writes the offline store as AWS
does. Small data, two tuning trials.

One execution runs in the module's fixture; a second, after the input changed, in the last test."""

import json
from argparse import Namespace
from pathlib import Path

import pytest

from smray import schema as schema_mod
from smray.feature_store.definition import FeatureGroupDefinition
from smray.workstation import datagen
from smray.workstation.commands import run_aws
from smray.workstation.pipeline import local_mode
from tests.container.conftest import IMAGE
from tests.support.aws_standins import aws_stand_ins, flush_offline
from tests.support.sagemaker_pipeline import Pipeline

pytestmark = pytest.mark.docker

BUCKET = "smray-semantics"
ROLE = "arn:aws:iam::123456789012:role/smray-sagemaker"
# One processing host: ingest's raw input is ShardedByS3Key, each host its own objects, which local mode
# cannot give (its hosts mount one folder; the harness refuses it). A 2-host ingest of a sharded input, on
# hosts with disks of their own, is tests/container/test_retraining_processing.py.
FAST = {
    "TuningTrials": 2,
    "TuningParallelTrials": 1,
    "NumRound": 30,
    "Threshold": 1e7,
    "ProcessingInstanceCount": 1,
}
ROWS = 300


def _definition(endpoints, monkeypatch) -> dict:
    """Rendered by the very code `smray run aws` calls, with the stand-ins as AWS."""
    for name, value in endpoints.environment().items():
        monkeypatch.setenv(name, value)
    args = Namespace(
        image=IMAGE,
        role=ROLE,
        bucket=BUCKET,
        region="us-east-1",
        instance_type="ml.m5.xlarge",
        spot_max_wait=0,
    )
    s3 = endpoints.client("s3")
    run_aws.upload_schema(BUCKET, schema_mod.housing(), s3)
    return json.loads(run_aws.build_pipeline(args, schema_mod.housing()).definition())


def _upload_input(endpoints, folder: Path, rows: int, seed: int) -> None:
    s3 = endpoints.client("s3")
    for old in s3.list_objects_v2(Bucket=BUCKET, Prefix="smray/input/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=old["Key"])
    datagen.generate(folder, rows=rows, files=1, fmt="csv", seed=seed)
    for path in folder.iterdir():
        s3.upload_file(str(path), BUCKET, f"smray/input/{path.name}")


def _stale_group(endpoints) -> None:
    """Another table's feature group with the same columns and names, its offline store in the same
    bucket and prefix (moto cannot delete a group: a group deleted and made again leaves its old
    `<group>-<epoch>/` folder there the same way)."""
    sagemaker = endpoints.client("sagemaker")
    group = FeatureGroupDefinition.from_schema("housing", schema_mod.housing())
    sagemaker.create_feature_group(
        FeatureGroupName="housing-archive",
        RecordIdentifierFeatureName=group.record_id,
        EventTimeFeatureName=group.event_time,
        FeatureDefinitions=group.feature_definitions(),
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{BUCKET}/smray/offline-store"}},
        RoleArn=ROLE,
    )
    runtime = endpoints.client("sagemaker-featurestore-runtime")
    names = [group.record_id, group.event_time, *group.value_types()]
    for i in range(40):
        values = {n: "1" for n in names} | {group.record_id: str(900_000 + i), group.event_time: "1700000000"}
        runtime.put_record(
            FeatureGroupName="housing-archive",
            Record=[{"FeatureName": k, "ValueAsString": v} for k, v in values.items()],
        )
    flush_offline(endpoints)


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    local_mode.prepare_environment(home)
    with aws_stand_ins() as endpoints:
        endpoints.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoints, tmp_path_factory


@pytest.fixture(scope="module")
def first(aws):
    endpoints, tmp = aws
    mp = pytest.MonkeyPatch()
    try:
        pipeline = Pipeline(_definition(endpoints, mp), endpoints)
        _stale_group(endpoints)
        _upload_input(endpoints, tmp.mktemp("raw1"), ROWS, seed=1)
        execution = pipeline.start(FAST)
        yield endpoints, pipeline, execution, mp
    finally:
        mp.undo()


def _report(endpoints, execution, step: str, output: str, file: str) -> dict:
    outputs = execution.step(step).properties["ProcessingOutputConfig"]["Outputs"]
    uri = next(o for o in outputs if o["OutputName"] == output)["S3Output"]["S3Uri"]
    bucket, _, key = f"{uri.rstrip('/')}/{file}".removeprefix("s3://").partition("/")
    return json.loads(endpoints.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_an_execution_evaluates_and_registers_the_best_trial(first):
    endpoints, _, execution, _ = first
    assert execution.status == "Succeeded", execution.failure
    best = execution.step("HPTuning").properties["TrainingJobSummaries"][0]["TrainingJobName"]
    evaluated = next(
        i for i in execution.step("EvaluateModel").properties["ProcessingInputs"] if i["InputName"] == "model"
    )["S3Input"]["S3Uri"]
    assert f"/{best}/output/model.tar.gz" in evaluated
    packages = endpoints.client("sagemaker").list_model_packages(ModelPackageGroupName="housing")
    [package] = packages["ModelPackageSummaryList"]
    described = endpoints.client("sagemaker").describe_model_package(
        ModelPackageName=package["ModelPackageArn"]
    )
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == evaluated


def test_preprocess_reads_only_the_group_s_current_offline_store(first):
    endpoints, _, execution, _ = first
    assert execution.step("PreprocessData").status == "Succeeded", execution.failure
    report = _report(endpoints, execution, "PreprocessData", "report", "preprocess.json")
    assert report["records"] == ROWS  # not the 40 records of housing-archive


def test_a_later_execution_trains_on_the_data_ingested_since(first, aws):
    endpoints, pipeline, execution, _ = first
    assert execution.status == "Succeeded", execution.failure
    _upload_input(endpoints, aws[1].mktemp("raw2"), ROWS + 60, seed=2)
    again = pipeline.start(FAST)
    assert again.status == "Succeeded", again.failure
    assert _report(endpoints, again, "PreprocessData", "report", "preprocess.json")["records"] >= ROWS + 60
