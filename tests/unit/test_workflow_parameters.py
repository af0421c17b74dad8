"""Every parameter of the workflow has one name and one default (smray.workflow) on every surface: the
SageMaker Pipeline on both targets, `smray run local`'s options and settings, the local scheduler's input
and the retraining state machine's input. The gate too: `--gate` on every command that runs the workflow,
and Threshold's default is the gate's own number everywhere."""

import json

import pytest
from moto import mock_aws

from smray import gate, hyperparameters, workflow
from smray import schema as schema_mod
from smray.schema import Task
from smray.workstation import cli
from smray.workstation import local_workflow as flow
from smray.workstation.commands import run_local
from smray.workstation.pipeline import definition, local_mode
from smray.workstation.retraining import statemachine
from smray.workstation.schedule import local_loop

PARAMETERS = [pytest.param(p, id=p.name) for p in workflow.PARAMETERS]


def rendered_pipelines() -> dict[str, dict]:
    """Both targets' definitions, as SageMaker reads them."""
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        sessions = {"aws": definition.aws_session("us-east-1", "bucket"), "local": local_mode.session("256m")}
        found = {}
        for name, session in sessions.items():
            target = definition.Target(
                name=name, image="smray:test", role="arn:aws:iam::1:role/r", ray_token="t"
            )
            found[name] = json.loads(definition.build(target, session).definition())
        return found


@pytest.fixture(scope="module")
def pipelines() -> dict[str, dict]:
    """Both targets' parameters, by name."""
    return {name: {p["Name"]: p for p in d["Parameters"]} for name, d in rendered_pipelines().items()}


@pytest.mark.parametrize("parameter", PARAMETERS)
def test_the_pipeline_names_it_and_defaults_it_so_on_both_targets(parameter, pipelines):
    for target in ("aws", "local"):
        assert pipelines[target][parameter.name]["DefaultValue"] == parameter.default, target


@pytest.mark.parametrize("parameter", PARAMETERS)
def test_run_local_takes_it_by_its_option_with_the_same_default(parameter):
    args = cli.build_parser().parse_args(["run", "local"])
    if parameter.name == "Threshold":  # not given: the gate's own, the default gate's on housing
        assert args.threshold is None and flow.Settings().threshold is None
        assert run_local.settings(args).threshold == parameter.default
    else:
        assert getattr(args, parameter.field) == parameter.default
        assert getattr(flow.Settings(), parameter.field) == parameter.default
    given = cli.build_parser().parse_args(["run", "local", parameter.option, "3"])
    assert getattr(given, parameter.field) == 3
    assert flow.Settings().parameters()[parameter.name] == parameter.default


def test_the_scheduler_s_input_calls_each_by_its_name_and_takes_whole_numbers(tmp_path):
    assert {k: v for k, v in local_loop.INPUT_KEYS.items() if k not in ("image", "endpoint")} == {
        "processing_hosts": "ProcessingInstanceCount",
        "training_hosts": "TrainingInstanceCount",
        "threshold": "Threshold",
        "tuning_trials": "TuningTrials",
        "num_round": "NumRound",
    }
    given = tmp_path / "input.json"
    given.write_text(json.dumps({"Threshold": 8000, "NumRound": 50}))  # as the state machine's inputs
    _, settings = local_loop.read_input(given)
    # local mode refuses a whole number for the pipeline's Float parameter
    assert isinstance(settings.threshold, float) and settings.parameters()["Threshold"] == 8000.0


@pytest.mark.parametrize("parameter", PARAMETERS)
def test_the_state_machine_takes_it_by_its_name_with_the_same_default(parameter):
    rendered = statemachine.render()
    assert parameter.name in statemachine.DEFAULTED_INPUT and f"$.{parameter.name}" in rendered
    defaults = statemachine.build()["States"]["Defaults"]["Result"]
    assert defaults[parameter.name] == parameter.default


def test_the_state_machine_trains_with_the_input_s_rounds_and_trials():
    hyperparameters_sent = statemachine.build()["States"]["Train"]["Parameters"]["HyperParameters"]
    assert hyperparameters_sent["num_round.$"] == "States.Format('{}', $.NumRound)"
    assert hyperparameters_sent["tune_trials.$"] == "States.Format('{}', $.TuningTrials)"
    assert {"num_round", "tune_trials"} <= set(hyperparameters.BY_NAME)  # names the image reads


GATES = [  # each command that runs the workflow, with what else it needs to parse
    ["run", "local"],
    ["run", "aws", "--image", "i", "--role", "r", "--bucket", "b"],
    ["pipeline", "show", "--image", "i", "--role", "r", "--bucket", "b"],
    ["schedule", "run", "--every", "rate(1 day)", "--input", "x.json"],
    ["retraining", "render"],  # the state machine's definition
]


@pytest.mark.parametrize("argv", GATES, ids=[" ".join(a[:2]) for a in GATES])
def test_every_command_that_runs_the_workflow_takes_the_gate_by_one_option_with_one_default(argv):
    assert cli.build_parser().parse_args(argv).gate == workflow.GATE.default == flow.Settings().gate
    given = cli.build_parser().parse_args([*argv, workflow.GATE.option, "accuracy >= 0.9"])
    assert given.gate == "accuracy >= 0.9"


def test_threshold_s_default_is_the_gate_s_own_on_every_surface(tmp_path, monkeypatch):
    churn = schema_mod.parse(
        {"name": "churn", "target": "churned", "task": "binary", "features": [{"name": "minutes"}]}
    )
    rule = gate.parse("accuracy >= 0.9", Task.BINARY)
    assert flow.Settings(schema=churn, gate=str(rule)).parameters()["Threshold"] == 0.9
    assert flow.Settings(schema=churn).parameters()["Threshold"] == gate.default(Task.BINARY).threshold
    (tmp_path / "churn.json").write_text(churn.dumps())
    given = tmp_path / "input.json"
    given.write_text(json.dumps({"Schema": str(tmp_path / "churn.json")}))
    assert local_loop.read_input(given, str(rule))[1].parameters()["Threshold"] == 0.9
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        target = definition.Target(
            name="aws", image="i", role="arn:aws:iam::1:role/r", ray_token="t", gate=rule
        )
        session = definition.aws_session("us-east-1", "bucket")
        rendered = json.loads(definition.build(target, session).definition())
    assert {p["Name"]: p for p in rendered["Parameters"]}["Threshold"]["DefaultValue"] == 0.9


def test_local_mode_accepts_every_input_and_aws_shards_ingest_s_raw_input():
    """Local mode refuses any S3DataDistributionType but FullyReplicated (sagemaker.local.entities): one
    ShardedByS3Key input stops `smray run local` at its first step. On AWS, ingest's raw input is
    ShardedByS3Key (each host downloads its own objects)."""
    distributions = {
        name: {
            (step["Name"], i["InputName"]): i["S3Input"]["S3DataDistributionType"]
            for step in rendered["Steps"]
            if step["Type"] == "Processing"
            for i in step["Arguments"]["ProcessingInputs"]
        }
        for name, rendered in rendered_pipelines().items()
    }
    assert set(distributions["local"].values()) == {"FullyReplicated"}, distributions["local"]
    assert distributions["aws"].pop(("FeatureStoreIngestion", "raw")) == "ShardedByS3Key"
    assert set(distributions["aws"].values()) == {"FullyReplicated"}
