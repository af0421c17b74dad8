"""The gate on every surface of the workflow, for every task: `--gate` and `--threshold` (and their
contradiction), the pipeline's condition and Fail message, the local run's summary and verdict, the
invoke line, the registry's metrics and `smray models list`, and the scheduler's champion/challenger."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from moto import mock_aws

from smray import gate, model_artifact
from smray.entrypoints.modes import register as register_mode
from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval, ModelVersion
from smray.schema import Task
from smray.workstation import cli
from smray.workstation import local_workflow as flow
from smray.workstation.commands import run_local
from smray.workstation.endpoints.client import Answer
from smray.workstation.pipeline import definition, local_mode
from smray.workstation.schedule import local_loop
from smray.workstation.schedule.expressions import parse as schedule_expression
from tests.support.classifiers import _target, build_classifier, raw_rows, table_schema

CHURN = table_schema(Task.BINARY)  # churned yes/no, "yes" the positive label
AWS = ["--image", "img", "--role", "arn:aws:iam::1:role/r", "--bucket", "smray-example"]


def _metric(value: float, deviation: float) -> dict:
    return {"value": value, "standard_deviation": deviation}


EVALUATIONS = {
    Task.REGRESSION: {
        "regression_metrics": {
            "rmse": _metric(0.8134, 0.0412),
            "mae": _metric(0.6012, 0.03),
            "r2": _metric(0.9123, 0.011),
            "mape": _metric(0.05, 0.01),
        },
        "rows": 500,
    },
    Task.BINARY: {
        "binary_classification_metrics": {
            "accuracy": _metric(0.9312, 0.0101),
            "precision": _metric(0.9, 0.02),
            "recall": _metric(0.8, 0.02),
            "f1": _metric(0.8456, 0.0213),
            "auc": _metric(0.9712, 0.0052),
            "logloss": _metric(0.2034, 0.0151),
            "confusion_matrix": {"no": {"no": 300, "yes": 10}, "yes": {"no": 24, "yes": 166}},
        },
        "rows": 500,
    },
    Task.MULTICLASS: {
        "multiclass_classification_metrics": {
            "accuracy": _metric(0.8123, 0.0172),
            "weighted_precision": _metric(0.8, 0.02),
            "weighted_recall": _metric(0.81, 0.02),
            "weighted_f1": _metric(0.8046, 0.0181),
            "logloss": _metric(0.5123, 0.0301),
            "confusion_matrix": {"gold": {"gold": 40, "silver": 2}, "silver": {"gold": 3, "silver": 55}},
        },
        "rows": 100,
    },
}


@pytest.fixture
def churn_file(tmp_path) -> Path:
    path = tmp_path / "churn.json"
    path.write_text(CHURN.dumps())
    return path


def _settings(*argv: str) -> flow.Settings:
    return run_local.settings(cli.build_parser().parse_args(["run", "local", *argv]))


# ---- --gate and --threshold ---------------------------------------------------------------------------


def test_the_gate_is_parsed_against_the_table_s_task(churn_file):
    chosen = _settings("--schema", str(churn_file), "--gate", "accuracy >= 0.9")
    assert chosen.rule == gate.GateRule(Task.BINARY, "accuracy", 0.9)
    assert chosen.parameters()["Threshold"] == 0.9 and chosen.threshold == 0.9
    assert _settings("--schema", str(churn_file)).rule == gate.default(Task.BINARY)  # auc >= 0.75
    assert _settings().rule == gate.GateRule(Task.REGRESSION, "rmse", 15000.0)  # housing, as before
    assert _settings("--threshold", "8000").rule == gate.GateRule(Task.REGRESSION, "rmse", 8000.0)
    # --threshold alone: the task's default gate with that number
    assert _settings("--schema", str(churn_file), "--threshold", "0.8").rule.metric == "auc"
    # both, naming one number: no contradiction
    assert _settings("--gate", "mae <= 900", "--threshold", "900").rule == gate.GateRule(
        Task.REGRESSION, "mae", 900.0
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--gate", "accuracy >= 0.9"], "a regression model's metrics are rmse, mae, mape, r2"),
        (["--gate", "rmse >= 9"], "a lower rmse is better, so the gate is rmse <= ..."),
        (["--gate", "rmse <= 9000", "--threshold", "8000"], "--threshold 8000.0 contradicts --gate"),
        (["--gate", "rmse"], "expected '<metric> >= <number>'"),
        (["--gate", "r2 >= 0"], "the threshold of --gate must be a finite number above 0, got 0.0"),
        (["--threshold", "nan"], "--threshold must be a finite number above 0, got nan"),
    ],
)
def test_a_bad_gate_is_one_clear_line(argv, says):
    with pytest.raises(UserError, match=r"^[^\n]*$") as refused:
        _settings(*argv)
    assert says in str(refused.value)


def test_a_contradiction_on_the_command_line_is_refused_by_run_aws_too(churn_file, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    argv = ["run", "aws", *AWS, "--schema", str(churn_file), "--gate", "accuracy >= 0.9"]
    with mock_aws():
        args = cli.build_parser().parse_args([*argv, "--parameter", "Threshold=0.8"])
        with pytest.raises(
            UserError, match=r"--parameter Threshold 0\.8 contradicts --gate 'accuracy >= 0\.9'"
        ):
            args.func(args)


def test_the_scheduler_s_input_threshold_replaces_the_gate_s_number(tmp_path, churn_file):
    """As an execution's Threshold replaces the state machine's default: the input is re-read each run."""
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"Schema": str(churn_file), "Threshold": 0.8}))
    _, settings = local_loop.read_input(path, "accuracy >= 0.9")
    assert settings.rule == gate.GateRule(Task.BINARY, "accuracy", 0.8)
    path.write_text(json.dumps({"Schema": str(churn_file)}))
    assert local_loop.read_input(path, "accuracy >= 0.9")[1].rule.threshold == 0.9
    with pytest.raises(UserError, match="a binary model's metrics are"):
        local_loop.read_input(path, "rmse <= 9")


# ---- the pipeline's condition ---------------------------------------------------------------------------


def _rendered(target_name: str, rule: gate.GateRule) -> dict:
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        session = (
            definition.aws_session("us-east-1", "bucket")
            if target_name == "aws"
            else local_mode.session("256m")
        )
        target = definition.Target(
            name=target_name, image="img", role="arn:aws:iam::1:role/r", ray_token="t", gate=rule
        )
        return json.loads(definition.build(target, session).definition())


@pytest.mark.parametrize("target_name", ["aws", "local"])
def test_a_binary_gate_on_accuracy_is_a_greater_or_equal_condition_that_fails_saying_below(target_name):
    rendered = _rendered(target_name, gate.parse("accuracy >= 0.9", Task.BINARY))
    steps = {s["Name"]: s for s in rendered["Steps"]}
    check = steps["CheckEvaluation"]["Arguments"]
    (condition,) = check["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == "binary_classification_metrics.accuracy.value"
    assert condition["RightValue"] == {"Get": "Parameters.Threshold"}
    (fail,) = check["ElseSteps"]
    assert fail["Name"] == "GateFail"
    message = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert message[0] == "test accuracy" and message[2] == "is below the Threshold"
    assert message[1]["Std:JsonGet"]["Path"] == "binary_classification_metrics.accuracy.value"
    params = {p["Name"]: p for p in rendered["Parameters"]}
    assert params["Threshold"]["DefaultValue"] == 0.9
    (register,) = check["IfSteps"]
    if target_name == "local":  # the registry records the metric of the gate the version passed
        arguments = register["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert arguments[arguments.index("--gate-metric") + 1] == "accuracy"
    else:
        assert register["Arguments"]["CustomerMetadataProperties"] == {"gate_metric": "accuracy"}
        statistics = register["Arguments"]["ModelMetrics"]["ModelQuality"]["Statistics"]
        assert statistics["ContentType"] == "application/json"


def test_a_regression_gate_stays_less_or_equal_and_fails_saying_above():
    rendered = _rendered("aws", gate.parse("mae <= 3000", Task.REGRESSION))
    check = {s["Name"]: s for s in rendered["Steps"]}["CheckEvaluation"]["Arguments"]
    assert check["Conditions"][0]["Type"] == "LessThanOrEqualTo"
    message = check["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert (message[0], message[2]) == ("test MAE", "is above the Threshold")


def test_pipeline_show_renders_the_gate_of_the_table_s_task(churn_file, monkeypatch, capsys):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    argv = ["pipeline", "show", *AWS, "--schema", str(churn_file), "--gate", "f1 >= 0.7"]
    with mock_aws():
        args = cli.build_parser().parse_args(argv)
        assert args.func(args) == 0
    rendered = json.loads(capsys.readouterr().out)
    check = {s["Name"]: s for s in rendered["Steps"]}["CheckEvaluation"]["Arguments"]
    assert (
        check["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"] == "binary_classification_metrics.f1.value"
    )


# ---- the summary --------------------------------------------------------------------------------------


def _result(task: Task, rule: gate.GateRule, **decided) -> flow.Result:
    execution = SimpleNamespace(id="exec1", status="Succeeded", seconds=42.0)
    return flow.Result(execution, EVALUATIONS[task], flow.Gate(rule, **decided), None)


def _version(group: str, number: int) -> ModelVersion:
    return ModelVersion(group, number, Approval.PENDING, "2026-01-01T00:00:00+00:00", "a", "img")


@pytest.mark.parametrize(
    ("task", "line"),
    [
        (Task.REGRESSION, "RMSE 0.813 (± 0.041), MAE 0.601 (± 0.030), R² 0.912 (± 0.011)"),
        (
            Task.BINARY,
            "accuracy 0.931 (± 0.010), AUC 0.971 (± 0.005), F1 0.846 (± 0.021), logloss 0.203 (± 0.015)",
        ),
        (Task.MULTICLASS, "accuracy 0.812 (± 0.017), weighted F1 0.805 (± 0.018), logloss 0.512 (± 0.030)"),
    ],
)
def test_the_summary_s_test_metrics_are_the_task_s_with_their_deviations(task, line):
    """Numbers by their magnitude: an RMSE of 0.81 (a kWh table) reads 0.813, not 1."""
    rule = gate.default(task)
    assert _result(task, rule, version=None, failed="x").summary()["test metrics"] == line


def test_a_large_metric_keeps_its_whole_part():
    evaluation = {"regression_metrics": {m: _metric(10939.4, 523.1) for m in ("rmse", "mae", "r2")}}
    assert flow.metrics_line(evaluation, Task.REGRESSION).startswith("RMSE 10,939 (± 523)")


def test_the_verdict_names_the_gate_s_metric_its_value_and_direction():
    accuracy = gate.parse("accuracy >= 0.9", Task.BINARY)
    passed = _result(Task.BINARY, accuracy, version=_version("churn", 3), value=0.9312)
    assert passed.summary()["gate"] == "passed (accuracy 0.931 >= 0.9): registered churn/3"
    refused = _result(Task.BINARY, accuracy.with_threshold(0.95), version=None, refused="...", value=0.9312)
    assert refused.summary()["gate"] == "refused: test accuracy 0.931 is below 0.95"
    rmse = gate.GateRule(Task.REGRESSION, "rmse", 0.5)
    refused = _result(Task.REGRESSION, rmse, version=None, refused="...", value=0.8134)
    assert refused.summary()["gate"] == "refused: test RMSE 0.813 is above 0.5"
    housing = gate.default(Task.REGRESSION)
    passed = _result(Task.REGRESSION, housing, version=_version("housing", 1), value=4159.5)
    assert passed.summary()["gate"] == "passed (RMSE 4,160 <= 15,000): registered housing/1"


def test_the_gate_reads_its_metric_from_the_run_s_evaluation(tmp_path):
    """What the local run does with an execution whose Fail step ran: its evaluation says by how much."""
    execution = SimpleNamespace(
        step=lambda name: (
            SimpleNamespace(failure="test accuracy 0.93 is below the Threshold 0.95")
            if name == "GateFail"
            else None
        ),
        steps=[],
        failure="",
    )
    rule = gate.parse("accuracy >= 0.95", Task.BINARY)
    decided = flow._gate(execution, EVALUATIONS[Task.BINARY], rule, tmp_path, "")
    assert decided.value == 0.9312 and decided.verdict == "refused: test accuracy 0.931 is below 0.95"


# ---- the invoke line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "answer", "line"),
    [
        (
            Task.BINARY,
            b"0.9312\n0.1204\n",
            "2 rows of the input: P(yes) 0.931 (actual yes), P(yes) 0.12 (actual no)",
        ),
        (
            Task.MULTICLASS,
            b'gold\n"silver, old"\n',
            "2 rows of the input: gold (actual gold), silver, old (actual bronze)",
        ),
    ],
)
def test_the_invoke_line_reads_the_endpoint_s_csv_answer_per_task(tmp_path, monkeypatch, task, answer, line):
    model = model_artifact.load(build_classifier(tmp_path / "model", task, rounds=2))
    frame = raw_rows(2).assign(
        **{model.transform.schema.target: ["yes", "no"] if task is Task.BINARY else ["gold", "bronze"]}
    )
    (tmp_path / "input").mkdir()
    frame.to_csv(tmp_path / "input" / "part.csv", index=False)
    sent = {}

    class Endpoint:
        def __init__(self, url: str) -> None:
            pass

        def invoke(self, body: bytes, content_type: str, accept: str = "") -> Answer:
            sent["body"], sent["accept"] = body, accept
            return Answer(200, answer, "text/csv")

    monkeypatch.setattr(flow, "Connection", Endpoint)
    endpoint = SimpleNamespace(url="http://127.0.0.1:1", name="e", model="m")
    sample = flow._invoke_sample(endpoint, tmp_path / "input", model, rows=2)
    assert sent["accept"] == "text/csv" and sent["body"].decode().splitlines()[0] == ",".join(model.features)
    result = flow.Result(
        SimpleNamespace(id="e", status="Succeeded", seconds=1.0),
        None,
        flow.Gate(gate.default(task), None),
        model,
    )
    result.deployment = flow.Deployment(endpoint, sample)
    assert result.summary()["invoke"] == line


# ---- the registry and `smray models list` --------------------------------------------------------------


def test_register_records_a_classification_s_metrics_and_gate(tmp_path):
    model = build_classifier(tmp_path / "model", Task.BINARY, rounds=2)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "evaluation.json").write_text(json.dumps(EVALUATIONS[Task.BINARY]))
    argv = ["--model", str(model), "--evaluation", str(tmp_path / "evaluation"), "--registry"]
    argv += [
        str(tmp_path / "registry"),
        "--group",
        "churn",
        "--image",
        "img",
        "--output",
        str(tmp_path / "out"),
    ]
    register_mode.run(None, register_mode.parser().parse_args([*argv, "--gate-metric", "accuracy"]))
    version = LocalRegistry(tmp_path / "registry").describe("churn", 1)
    assert (
        version.metrics["binary_classification_metrics"]
        == EVALUATIONS[Task.BINARY]["binary_classification_metrics"]
    )
    assert version.metrics["gate_metric"] == "accuracy"
    assert version.gate_metric() == "accuracy" and version.metric("accuracy") == 0.9312
    with pytest.raises(UserError, match="--gate-metric 'rmse' is not a metric of a binary model"):
        register_mode.run(None, register_mode.parser().parse_args([*argv, "--gate-metric", "rmse"]))


def test_models_list_shows_each_version_s_gate_metric(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMRAY_HOME", str(tmp_path))
    model = build_classifier(tmp_path / "model", Task.BINARY, rounds=2)
    registry = LocalRegistry(tmp_path / "registry")
    binary = EVALUATIONS[Task.BINARY]
    registry.register("churn", model, "img", binary | {"gate_metric": "accuracy"}, execution="e1")
    registry.register("churn", model, "img", binary, execution="e2")  # no gate recorded: the task's default
    args = cli.parse(["models", "list", "--group", "churn"])
    assert args.func(args) == 0
    second, first = capsys.readouterr().out.splitlines()
    assert "auc 0.971" in second and "accuracy 0.931" in first and "rmse" not in first + second


# ---- the scheduler's champion and challenger ------------------------------------------------------------


def _test_split(folder: Path, model: model_artifact.Model, rows: int = 400) -> Path:
    """A test split as preprocess writes it, encoded by `model`'s preprocessing."""
    frame = raw_rows(rows, seed=17)
    target = _target(frame, model.task, 17)
    encoded = model.transform.apply(frame)
    encoded[model.transform.schema.target] = model.transform.encode_target(target)
    (folder / "test").mkdir(parents=True)
    encoded.to_parquet(folder / "test" / "part.parquet")
    return folder


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS])
def test_a_classifier_is_scored_on_the_same_rows_as_the_served_one_and_compared_by_accuracy(
    tmp_path, task, monkeypatch
):
    registry = LocalRegistry(tmp_path / "registry")
    strong_dir = build_classifier(tmp_path / "strong", task, rounds=40, seed=3)
    weak_dir = build_classifier(tmp_path / "weak", task, rows=60, rounds=1, seed=8)  # other categories too
    strong, weak = model_artifact.load(strong_dir), model_artifact.load(weak_dir)
    folder = _test_split(tmp_path / "runs" / "exec1", weak)  # encoded by the challenger's preprocessing
    strong_accuracy = local_loop.score_on_test(folder / "test", weak.transform, strong, "accuracy")
    weak_accuracy = local_loop.score_on_test(folder / "test", weak.transform, weak, "accuracy")
    assert strong_accuracy > weak_accuracy

    served = registry.register("churn", strong_dir, "img", {})
    new = registry.register("churn", weak_dir, "img", {})
    rule = gate.parse("accuracy >= 0.1", task)
    result = flow.Result(SimpleNamespace(folder=folder), None, flow.Gate(rule, new), weak)
    record = local_loop.Record("t0", "", "exec1", "Succeeded", "", None, "churn/1", None, "", "churn/1")
    scheduler = local_loop.Scheduler(tmp_path, schedule_expression("rate(1 day)"), tmp_path / "input.json")
    decision = scheduler._decide(result, served, flow.Settings(endpoint="churn"), tmp_path, record)
    assert decision.startswith(
        "not deployed: churn/2 is worse than the served churn/1 on this run's test set: accuracy "
    )
    assert " < " in decision and record.metric == "accuracy" and record.new_score < record.served_score
    assert registry.describe("churn", 2).status is Approval.REJECTED

    # the other way round: the better challenger is deployed
    deployed = []
    monkeypatch.setattr(flow, "deploy_approve_and_invoke", lambda *args: deployed.append(args[2]))
    result = flow.Result(SimpleNamespace(folder=folder), None, flow.Gate(rule, served), strong)
    record = local_loop.Record("t0", "", "exec1", "Succeeded", "", None, "churn/2", None, "", "churn/2")
    decision = scheduler._decide(result, new, flow.Settings(endpoint="churn"), tmp_path, record)
    assert decision.startswith("deployed churn/1 (accuracy ") and deployed == [result]


def test_a_lower_is_better_metric_compares_the_other_way():
    assert local_loop._worse(0.3, 0.2, higher_is_better=False) and not local_loop._worse(0.2, 0.3, False)
    assert local_loop._worse(0.2, 0.3, higher_is_better=True) and not local_loop._worse(0.3, 0.2, True)


def test_another_model_s_probabilities_are_read_in_the_challenger_s_labels():
    three = np.array([[0.2, 0.5, 0.3]])
    moved = local_loop.in_labels(three, ("a", "b", "c"), ("c", "a", "d"), Task.MULTICLASS)
    assert moved.tolist() == [[0.3, 0.2, 0.0]]  # d: a label it never learned
    flipped = local_loop.in_labels(np.array([0.9]), ("yes", "no"), ("no", "yes"), Task.BINARY)
    assert flipped.tolist() == pytest.approx([0.1])


def test_history_written_when_the_gate_was_always_rmse_still_reads(tmp_path):
    old = {
        "started": "t0",
        "finished": "t1",
        "execution": "e1",
        "status": "Succeeded",
        "new_version": "housing/2",
        "new_rmse": 4100.5,
        "served_before": "housing/1",
        "served_rmse": 4200.0,
        "decision": "deployed housing/2",
        "served_after": "housing/2",
    }
    (tmp_path / local_loop.HISTORY).write_text(json.dumps(old) + "\n")
    (record,) = local_loop.history(tmp_path)
    assert (record["metric"], record["new_score"], record["served_score"]) == ("rmse", 4100.5, 4200.0)


def test_raw_features_recover_categories_and_numbers(tmp_path):
    model = model_artifact.load(build_classifier(tmp_path / "m", Task.BINARY, rounds=1))
    frame = raw_rows(50, seed=2)
    back = local_loop.raw_features(model.transform.apply(frame), model.transform)
    assert list(back.columns) == list(frame.columns)
    for name in model.transform.schema.categorical:  # a missing value stays missing
        assert back[name].tolist() == frame[name].where(frame[name].notna(), None).tolist()
    for name in ("minutes", "calls"):
        np.testing.assert_allclose(back[name].to_numpy("float64"), frame[name].to_numpy("float64"))
