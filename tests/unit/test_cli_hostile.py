"""The CLI against hostile input: every refusal is one line, comes before anything starts (no job, no
container, nothing written under SMRAY_HOME), and never a traceback."""

import errno
import json
import socket

import pytest

from smray.workstation import cli
from smray.workstation import local_workflow as flow
from smray.workstation.endpoints import local as local_endpoints


@pytest.fixture
def nothing_starts(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("something started before the input was checked")

    for name in ("stage_input", "run_pipeline", "require_image", "deploy_approve_and_invoke"):
        monkeypatch.setattr(flow, name, started)
    monkeypatch.setattr(local_endpoints, "_docker", started)


@pytest.fixture
def refused(own_smray_home, capsys, nothing_starts):
    """Runs the CLI; returns its one line on stderr, having checked that it failed with just that."""

    def run(*argv: str) -> str:
        before = sorted(own_smray_home.rglob("*"))
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        code, captured = exit_.value.code, capsys.readouterr()
        assert code not in (0, None)
        err = captured.err + (code if isinstance(code, str) else "")  # sys.exit(text) prints it at exit
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
        assert sorted(own_smray_home.rglob("*")) == before
        return lines[0]

    return run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "nan"], "--threshold must be a finite number above 0, got nan"),
        (["--threshold", "-1"], "--threshold must be a finite number above 0"),
        (["--threshold", "inf"], "--threshold must be a finite number above 0"),
        (["--tuning-trials", "0"], "--tuning-trials must be a whole number of at least 1, got 0"),
        (["--num-round", "0"], "--num-round must be a whole number of at least 1"),
        (["--training-hosts", "500"], "--training-hosts must be a whole number from 1 to 16, got 500"),
        (["--processing-hosts", "0"], "--processing-hosts must be a whole number from 1 to 16"),
        (["--endpoint", "../x"], "--endpoint '../x' is not a valid endpoint name"),
        (["--generate", "0"], "--generate must be a whole number of at least 1, got 0"),
        (["--generate", "-5"], "--generate must be a whole number of at least 1"),
    ],
)
def test_run_local_checks_every_option_before_it_starts(refused, argv, message):
    assert message in refused("run", "local", *argv)


def test_a_schema_of_more_features_than_feature_store_takes_is_refused(refused, tmp_path):
    from smray import schema

    raw = schema.housing().to_dict()
    raw["features"] = [{"name": f"f{i}", "type": "fractional"} for i in range(2_501)]
    (tmp_path / "wide.json").write_text(json.dumps(raw))
    assert "2,504 columns with the target, record id and event time: a Feature Store" in refused(
        "run", "local", "--schema", str(tmp_path / "wide.json")
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"Threshold": float("nan")}, "Threshold must be a finite number above 0, got nan"),
        ({"Threshold": -1}, "Threshold must be a finite number above 0"),
        ({"Threshold": "high"}, "Threshold must be a finite number above 0, got 'high'"),
        ({"TuningTrials": 0}, "TuningTrials must be a whole number of at least 1"),
        ({"NumRound": 2.5}, "NumRound must be a whole number of at least 1, got 2.5"),
        ({"TrainingInstanceCount": 500}, "TrainingInstanceCount must be a whole number from 1 to 16"),
        ({"EndpointName": "../x"}, "EndpointName '../x' is not a valid endpoint name"),
        ({"DataUri": 5}, "DataUri must be a non-empty string, got 5"),
        ({"Schema": ["s.json"]}, "Schema must be a non-empty string"),
        ({"Image": None}, "Image must be a non-empty string"),
    ],
)
def test_the_scheduler_s_input_is_held_to_the_same_rules(refused, tmp_path, given, message):
    (tmp_path / "input.json").write_text(json.dumps({"DataUri": str(tmp_path)} | given))
    line = refused(
        "schedule",
        "run",
        "--every",
        "rate(1 day)",
        "--run-now",
        "--max-runs",
        "1",
        "--input",
        str(tmp_path / "input.json"),
    )
    assert message in line and str(tmp_path / "input.json") in line


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(100000000 days)", "at most 1,830 days"),
        ("cron(² * * * ? *)", "minutes value '²' is not in 0-59"),
        ("cron(0 12 ? * ٣ *)", "day-of-week value '٣' is not in 1-7"),
    ],
)
def test_schedule_next_refuses_what_it_cannot_compute(refused, expression, message):
    assert message in refused("schedule", "next", expression)


def test_endpoint_names_are_checked_on_every_command_that_takes_one(refused, own_smray_home, tmp_path):
    victim = own_smray_home.parent / "victim"  # <home>/endpoints/../../victim
    victim.mkdir()
    (victim / "endpoint.json").write_text("{}")
    (tmp_path / "rows.csv").write_text("1,2\n")
    assert "'../../victim' is not a valid endpoint name" in refused("endpoints", "delete", "../../victim")
    assert "is not a valid endpoint name" in refused("invoke", "../../victim", str(tmp_path / "rows.csv"))
    assert "--name 'a_b' is not a valid endpoint name" in refused("deploy", "--name", "a_b")
    assert (victim / "endpoint.json").is_file()


def test_an_endpoint_that_is_down_is_a_platform_error(refused, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "rows.csv").write_text("1,2\n")
    line = refused("invoke", f"http://127.0.0.1:{port}", str(tmp_path / "rows.csv"))
    assert line.startswith(f"smray: platform error: http://127.0.0.1:{port} did not answer")
    line = refused("invoke", f"http://ann:s3cret@127.0.0.1:{port}", str(tmp_path / "rows.csv"))
    assert line.startswith(f"smray: platform error: http://***@127.0.0.1:{port} did not answer")


def test_a_corrupt_endpoint_record_or_registry_is_named(refused, own_smray_home):
    (own_smray_home / "endpoints" / "housing").mkdir(parents=True)
    (own_smray_home / "endpoints" / "housing" / "endpoint.json").write_text('{"name": "hous')
    assert f"{own_smray_home}/endpoints/housing/endpoint.json is not an endpoint record" in refused(
        "endpoints", "list"
    )
    (own_smray_home / "registry").mkdir()
    (own_smray_home / "registry" / "registry.db").write_bytes(b"not a database, not at all" * 10)
    assert f"{own_smray_home}/registry/registry.db is not a usable registry" in refused("models", "list")


RUN = '{"execution": "e1", "started": 1.8e9, "status": "Succeeded", "params": {}, "metrics": {}}\n'


def test_a_torn_line_in_the_middle_of_a_history_is_named(refused, own_smray_home):
    (own_smray_home / "experiments.jsonl").write_text('{"execution": "e0", "sta\n' + RUN)
    assert f"{own_smray_home}/experiments.jsonl, line 1: not a record" in refused("runs")
    (own_smray_home / "schedule-history.jsonl").write_text('{"started": 5}\n')
    assert "schedule-history.jsonl, line 1: not a record" in refused("schedule", "history")


def test_a_torn_last_line_is_what_a_crash_leaves_and_is_ignored(own_smray_home, capsys):
    (own_smray_home / "experiments.jsonl").write_text(RUN + '{"execution": "e2", "sta')
    with pytest.raises(SystemExit) as exit_:
        cli.main(["runs"])
    assert exit_.value.code == 0 and "e1" in capsys.readouterr().out


def test_a_full_disk_is_a_platform_error(refused, monkeypatch, tmp_path):
    from smray.workstation import datagen

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "part-0.csv"))

    monkeypatch.setattr(datagen, "generate", full)
    line = refused("data", "generate", "--out", str(tmp_path))
    assert line == f"smray: platform error: No space left on device: {tmp_path / 'part-0.csv'}"


@pytest.mark.parametrize("value", ["~no-such-user-smray/home", "file"])
def test_a_bad_smray_home_is_named(refused, monkeypatch, tmp_path, value):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SMRAY_HOME", value if value.startswith("~") else str(tmp_path / value))
    assert "SMRAY_HOME" in refused("schedule", "history")


def test_a_malformed_mlflow_uri_is_refused_before_the_run(refused, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:s3cret@mlflow.example:port/")
    line = refused("run", "local")
    assert "MLFLOW_TRACKING_URI https://***@mlflow.example:port/ is not" in line and "s3cret" not in line


@pytest.mark.parametrize("name", ["../../x", "a/b", ".", "x\n"])
def test_store_repair_takes_a_group_name_never_a_path(refused, name, own_smray_home):
    (own_smray_home / "x.json").write_text("{}")  # what a climbing name would reach
    assert "is not a feature group name" in refused("store", "repair", name)
