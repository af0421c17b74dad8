"""The local retraining loop's parts that need no containers: its input, the side-by-side score on one
test set, missed fire times, and the stop signals."""

import json
from datetime import UTC, datetime

import pytest

from smray import gate, model_artifact, schema
from smray.errors import UserError
from smray.schema import Task
from smray.workstation.schedule import local_loop
from smray.workstation.schedule.expressions import parse
from tests.support.models import build_model, sample_rows


def test_the_input_is_the_state_machine_s_json(tmp_path):
    path = tmp_path / "input.json"
    path.write_text(
        json.dumps(
            {
                "DataUri": "file:///data/houses.csv",
                "Threshold": 9000,
                "EndpointName": "h",
                "TrainingInstanceCount": 2,
                "RoleArn": "ignored locally",
            }
        )
    )
    source, settings = local_loop.read_input(path)
    assert str(source) == "/data/houses.csv"
    assert (settings.threshold, settings.endpoint, settings.training_hosts) == (9000.0, "h", 2)
    path.write_text(json.dumps({"DataUri": "s3://bucket/x"}))
    with pytest.raises(UserError, match="is in S3"):
        local_loop.read_input(path)
    path.write_text(json.dumps({"Threshold": "high"}))
    with pytest.raises(UserError, match="Threshold must be a finite number above 0, got 'high'"):
        local_loop.read_input(path)
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="must be a JSON object"):
        local_loop.read_input(path)


def test_two_models_with_different_scalers_are_scored_on_the_same_rows(tmp_path):
    good = model_artifact.load(build_model(tmp_path / "good", rounds=60, seed=1))
    weak = model_artifact.load(build_model(tmp_path / "weak", rounds=2, seed=2))  # its own scaler
    rows = sample_rows(400, seed=11)
    target = schema.housing().target
    from smray.workstation import datagen

    frame = datagen.housing_frame(400, seed=11, with_ids=False)
    test = good.transform.apply(frame[[target, *good.features]])  # scaled as preprocess writes it
    (tmp_path / "test").mkdir()
    test.to_parquet(tmp_path / "test" / "part-0.parquet")
    good_rmse = local_loop.score_on_test(tmp_path / "test", good.transform, good, "rmse")
    weak_rmse = local_loop.score_on_test(tmp_path / "test", good.transform, weak, "rmse")
    assert good_rmse < weak_rmse
    direct = float(((good.predict(rows, scaled=False) - frame[target].to_numpy()) ** 2).mean() ** 0.5)
    assert good_rmse == pytest.approx(direct, rel=1e-9)  # unscaling recovered the raw rows exactly


def test_a_rate_counts_from_the_start_and_a_cron_from_the_clock(tmp_path):
    rate = local_loop.Scheduler(tmp_path, parse("rate(5 minutes)"), tmp_path / "input.json")
    rate.anchor = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert rate._next(datetime(2026, 11, 22, 10, 12, 3, tzinfo=UTC)) == datetime(
        2026, 11, 22, 10, 15, tzinfo=UTC
    )
    cron = local_loop.Scheduler(tmp_path, parse("cron(0/20 * * * ? *)"), tmp_path / "input.json")
    assert cron._next(datetime(2026, 11, 22, 10, 12, 3, tzinfo=UTC)) == datetime(
        2026, 11, 22, 10, 20, tzinfo=UTC
    )


def test_missed_fire_times_are_counted(tmp_path):
    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 minute)"), tmp_path / "input.json")
    due = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert scheduler._missed(due, datetime(2026, 11, 22, 10, 3, 30, tzinfo=UTC)) == 3
    assert scheduler._missed(due, datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)) == 0


def test_signals_stop_between_runs_finish_a_run_then_abandon_it(tmp_path):
    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 minute)"), tmp_path / "input.json")
    scheduler._on_signal(2, None)  # between runs: stop at once
    assert scheduler.stop.is_set()
    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 minute)"), tmp_path / "input.json")
    scheduler.in_run = True
    scheduler._on_signal(15, None)  # during a run: finish it first
    assert scheduler.stop.is_set()
    scheduler.in_deploy = True
    scheduler._on_signal(15, None)  # a second signal while the endpoint swaps: the swap completes
    scheduler.in_deploy = False
    with pytest.raises(KeyboardInterrupt):
        scheduler._on_signal(15, None)  # a second signal otherwise: abandon the run


def test_a_second_scheduler_on_the_same_home_is_refused(tmp_path):
    (tmp_path / "input.json").write_text("{}")
    first = local_loop.Scheduler(tmp_path, parse("rate(1 minute)"), tmp_path / "input.json")
    with first._only_scheduler(), pytest.raises(UserError, match="another smray schedule"):
        second = local_loop.Scheduler(tmp_path, parse("rate(1 minute)"), tmp_path / "input.json")
        with second._only_scheduler():
            pass


def test_a_model_that_passed_the_gate_but_is_worse_than_the_served_one_is_rejected(tmp_path):
    from types import SimpleNamespace

    from smray.registry.local import LocalRegistry
    from smray.registry.records import Approval
    from smray.workstation import datagen
    from smray.workstation import local_workflow as flow

    registry = LocalRegistry(tmp_path / "registry")
    served = registry.register("housing", build_model(tmp_path / "good", rounds=60), "smray:1", {})
    new = registry.register("housing", build_model(tmp_path / "weak", rounds=2, seed=5), "smray:1", {})
    weak = model_artifact.load(tmp_path / "weak")
    frame = datagen.housing_frame(300, seed=21, with_ids=False)
    folder = tmp_path / "runs" / "exec1"
    (folder / "test").mkdir(parents=True)
    weak.transform.apply(frame[[schema.housing().target, *weak.features]]).to_parquet(
        folder / "test" / "p.parquet"
    )
    result = flow.Result(
        SimpleNamespace(folder=folder), None, flow.Gate(gate.default(Task.REGRESSION), new), weak
    )
    record = local_loop.Record("t0", "", "exec1", "Succeeded", "", None, "housing/1", None, "", "housing/1")

    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 day)"), tmp_path / "input.json")
    decision = scheduler._decide(result, served, flow.Settings(endpoint="houses"), tmp_path, record)

    assert decision.startswith(
        "not deployed: housing/2 is worse than the served housing/1 on this run's test set"
    )
    assert record.new_score > record.served_score and record.metric == "rmse"
    rejected = registry.describe("housing", 2)
    assert rejected.status is Approval.REJECTED and "worse than the served housing/1" in rejected.description
    assert registry.describe("housing", 1).status is Approval.PENDING  # the served one is left alone


def test_a_run_that_dies_of_an_unexpected_error_is_in_the_history(tmp_path, monkeypatch):
    from smray.workstation import local_workflow as flow

    (tmp_path / "input.json").write_text(json.dumps({"DataUri": str(tmp_path)}))

    def broken(*args, **kwargs):
        raise RuntimeError("docker vanished")

    monkeypatch.setattr(flow, "stage_input", broken)
    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 day)"), tmp_path / "input.json", run_now=True)
    with pytest.raises(RuntimeError, match="docker vanished"):
        scheduler.run()
    (run,) = local_loop.history(tmp_path)
    assert run["decision"] == "run failed unexpectedly: RuntimeError: docker vanished" and run["finished"]


def test_the_schedule_s_input_names_the_user_s_table(tmp_path):
    table = schema.parse({"name": "churn", "target": "MONTHS", "features": [{"name": "CALLS"}]})
    (tmp_path / "churn.json").write_text(table.dumps())
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"DataUri": str(tmp_path), "Schema": str(tmp_path / "churn.json")}))
    _, settings = local_loop.read_input(path)
    assert settings.schema == table and settings.endpoint_name == "churn"
    assert settings.parameters()["FeatureGroupName"] == "churn"
    path.write_text(json.dumps({"DataUri": str(tmp_path)}))
    assert local_loop.read_input(path)[1].schema == schema.housing()  # the default table


def test_a_run_the_gate_refused_or_that_failed_is_recorded_in_the_summary_s_words(tmp_path):
    from types import SimpleNamespace

    from smray.workstation import local_workflow as flow

    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 day)"), tmp_path / "input.json")
    record = local_loop.Record("t0", "", "exec1", "Failed", "", None, "", None, "", "")
    rule = gate.GateRule(Task.REGRESSION, "rmse", 1.0)
    refused = flow.Gate(rule, None, refused="test RMSE 9.5 is above the Threshold 1.0")
    failed = flow.Gate(rule, None, failed="step PreprocessData failed: feature group housing has no records")
    for decided, line in [
        (refused, "refused: test RMSE 9.5 is above the Threshold 1.0"),
        (failed, "step PreprocessData failed: feature group housing has no records"),
    ]:
        execution = SimpleNamespace(folder=tmp_path, id="exec1", status="Failed", seconds=9.0)
        result = flow.Result(execution, None, decided, None)
        assert scheduler._decide(result, None, flow.Settings(), tmp_path, record) == f"not deployed: {line}"
        assert line in result.summary().values()
