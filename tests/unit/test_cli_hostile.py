"""The CLI against hostile input: every refusal is one line, comes before anything starts (no job, no
container, no process, nothing written under SMRAY_HOME), and never a traceback.

The matrix below covers every command and subcommand, found by walking `cli.build_parser()` (a command
without cases fails `test_every_command_has_hostile_cases`, naming it), and every option that takes a
value (one no case gives fails `test_every_option_is_given_hostile_values`, unless EXEMPT says why).
Kinds: nonsense numbers (0, -1, nan, inf, 1e309, "abc"), names and paths that climb out (`../x`, an
absolute path where a name is expected), files that cannot be read as such (a folder or a FIFO where a
file is expected: tests run as root, for whom mode 000 is no obstacle), and corrupt state files.

argparse's own refusals (a value it cannot convert, an unknown option, a missing argument) are held to
the same one line: the CLI's parser prints `PROG: MESSAGE; see PROG --help` instead of argparse's usage
block, so a script or a person reads every refusal the same way. Commands that reach AWS run inside
moto's mock_aws(), so a check that comes too late fails with a mocked answer, never a real one.
"""

import errno
import json
import os
import shlex
import socket
import sqlite3
from argparse import ArgumentParser, _SubParsersAction
from collections.abc import Callable
from pathlib import Path

import pytest
from moto import mock_aws

import smray
from smray import locks
from smray import schema as schema_mod
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.workstation import cli
from smray.workstation.retraining import statemachine


@pytest.fixture
def refused(own_smray_home, capsys, nothing_starts, monkeypatch, tmp_path):
    """Runs the CLI (in an empty folder, AWS mocked); returns its one line on stderr, having checked that
    it failed with just that."""
    monkeypatch.chdir(tmp_path)  # relative defaults (data/generated, runs) land here
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def run(*argv: str) -> str:
        before = sorted(own_smray_home.rglob("*"))
        with mock_aws(), pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        code, captured = exit_.value.code, capsys.readouterr()
        assert code not in (0, None)
        err = captured.err + (code if isinstance(code, str) else "")  # sys.exit(text) prints it at exit
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
        assert sorted(own_smray_home.rglob("*")) == before
        return lines[0]

    return run


# ---- the matrix: every command x every kind of hostile value ------------------------------------------

AWS_INPUT = {key: "x" for key in statemachine.REQUIRED_INPUT} | {
    "JobNamePrefix": "smray",
    "Threshold": 50000,
    "ProcessingInstanceCount": 1,
    "TrainingInstanceCount": 1,
}


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Hostile stand-ins for the paths a command takes, by the placeholder a case names them with."""
    made = {
        "folder": tmp_path / "a-folder",  # a folder where a file is expected
        "fifo": tmp_path / "a-fifo.json",  # reading it would wait for a writer for ever
        "fifo_csv": tmp_path / "a-fifo.csv",
        "file": tmp_path / "a-file.txt",  # a file where a folder is expected
        "csv": tmp_path / "rows.csv",
        "torn": tmp_path / "torn.json",  # half-written
        "list": tmp_path / "list.json",  # JSON, but not an object
        "aws_input": tmp_path / "aws-input.json",
        "nan_input": tmp_path / "nan-input.json",
        "local_input": tmp_path / "local-input.json",
        "victim": tmp_path / "victim",  # an absolute path where a name is expected
    }
    made["folder"].mkdir()
    made["victim"].mkdir()
    (made["victim"] / "endpoint.json").write_text("{}")
    os.mkfifo(made["fifo"])
    os.mkfifo(made["fifo_csv"])
    made["file"].write_text("not a folder\n")
    made["csv"].write_text("1,2\n")
    made["torn"].write_text('{"DataUri": "x", "Thre')
    made["list"].write_text("[1, 2]")
    made["aws_input"].write_text(json.dumps(AWS_INPUT))
    made["nan_input"].write_text(json.dumps(AWS_INPUT | {"Threshold": float("nan")}))
    made["local_input"].write_text(json.dumps({"DataUri": str(made["csv"])}))
    return {name: str(path) for name, path in made.items()} | {
        "missing": str(tmp_path / "missing.json"),
        "missing_csv": str(tmp_path / "missing.csv"),
        "out": str(tmp_path / "out"),
        "crlf": "text/csv\r\nX-Injected: 1",
        "aws": "--image img --role arn:aws:iam::1:role/r --bucket bkt",
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


ENDPOINT = {
    "name": "housing",
    "url": "http://127.0.0.1:9",
    "port": 9,
    "group": "housing",
    "version": 1,
    "image": "smray:latest",
    "container": "m1",
    "router": "r1",
    "updated": "2025-01-01",
}
SCHEDULED = {
    "started": "2025-01-01T00:00:00+00:00",
    "finished": "2025-01-01T00:10:00+00:00",
    "execution": "e1",
    "status": "Succeeded",
    "new_version": "housing/1",
    "new_rmse": 1.0,
    "served_before": "",
    "served_rmse": None,
    "decision": "deployed",
    "served_after": "housing/1",
}
RUN = '{"execution": "e1", "started": 1.8e9, "status": "Succeeded", "params": {}, "metrics": {}}\n'


def _group_with_garbage_catalog(home: Path) -> None:
    """A group a run made (the home's lock file and the group's are there), its catalog then overwritten."""
    with locks.writing_home(home, "a run"):
        store = LocalFeatureStore(home / "feature-store")
        group = store.ensure_group(FeatureGroupDefinition.from_schema("housing", schema_mod.housing()))
        with store._catalog(group):
            pass
    catalog = Path(group.offline_uri) / "catalog.sqlite"
    for leftover in catalog.parent.glob("catalog.sqlite-*"):
        leftover.unlink()
    catalog.write_bytes(b"not a database, not at all" * 10)


# What a crash, a power cut or a hand edit leaves in the home, by the name a case gives.
STATES: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "torn endpoint": lambda home, _: _write(home / "endpoints/housing/endpoint.json", '{"name": "hous'),
    "mistyped endpoint": lambda home, _: _write(
        home / "endpoints/housing/endpoint.json", json.dumps(ENDPOINT | {"url": 5, "port": "x"})
    ),
    "garbage registry": lambda home, _: _write(home / "registry/registry.db", "not a database" * 20),
    "torn history": lambda home, _: _write(
        home / "schedule-history.jsonl", '{"started": "2025-01-01", "fini\n' + json.dumps(SCHEDULED) + "\n"
    ),
    "mistyped history": lambda home, _: _write(
        home / "schedule-history.jsonl", json.dumps(SCHEDULED | {"execution": [], "status": 5}) + "\n"
    ),
    "mistyped runs": lambda home, _: _write(
        home / "experiments.jsonl",
        RUN + '{"execution": "e2", "started": "yesterday", "status": 1, "params": [], "metrics": {}}\n',
    ),
    "runs from no time": lambda home, _: _write(home / "experiments.jsonl", RUN.replace("1.8e9", "1e300")),
    "runs of text metrics": lambda home, _: _write(
        home / "experiments.jsonl", RUN.replace('"metrics": {}', '"metrics": {"rmse": "low"}')
    ),
    "torn group": lambda home, _: _write(home / "feature-store/feature-groups/housing.json", '{"Feat'),
    "empty group": lambda home, _: _write(home / "feature-store/feature-groups/housing.json", "{}"),
    "garbage catalog": lambda home, _: _group_with_garbage_catalog(home),
    "installed elsewhere": lambda home, monkeypatch: monkeypatch.setattr(
        smray, "__file__", str(home.parent / "site-packages" / "smray" / "__init__.py")
    ),
}

LOCAL = "schedule run --every 'rate(1 day)' --run-now"
RETRAIN = "retraining deploy --schedule 'rate(1 day)'"
WHOLE = "must be a whole number"
POSITIVE = "must be a finite number above 0"
NOT_ENDPOINT = "is not a valid endpoint name"
NOT_GROUP = "is not a valid group name"
NOT_URL = "is not a usable URL"

# (arguments, what the one line says, the corrupt state the home is given first): {name} is a path of
# `files`. Several are the gaps an audit found (issue 24); each says what it guards.
CASES: list[tuple[str, str] | tuple[str, str, str]] = [
    ("cluster --hosts 0 check", f"--hosts {WHOLE} from 1 to 16, got 0"),
    ("cluster --hosts 500 check", f"--hosts {WHOLE} from 1 to 16, got 500"),
    ("cluster --object-store-mib -1 check", f"--object-store-mib {WHOLE} of at least 1, got -1"),
    ("cluster --shm-size lots check", "--shm-size 'lots' is not a size"),
    ("cluster --image '' check", "--image must be a non-empty string"),
    ("cluster --mount {folder} check", "--mount expects HOST_DIR:/CONTAINER_DIR"),
    ("cluster --mount {folder}:data check", "--mount expects HOST_DIR:/CONTAINER_DIR"),
    ("cluster --mount {missing}:/data check", "is not a folder"),
    ("cluster --mount {fifo}:/data check", "is not a folder"),
    ("cluster --runs-dir {file} check", "--runs-dir {file} is not a folder"),
    ("cluster --runs-dir {file}/runs check", "--runs-dir {file}/runs: {file} is not a folder"),
    ("cluster --kind inference check", "invalid choice: 'inference'"),
    ("cluster", "the following arguments are required: mode"),
    ("data generate --rows 0 --out {out}", f"--rows {WHOLE} of at least 1, got 0"),
    ("data generate --rows -1 --out {out}", f"--rows {WHOLE} of at least 1, got -1"),
    ("data generate --files 0 --out {out}", f"--files {WHOLE} from 1 to 100000, got 0"),
    ("data generate --rows 4 --files 5 --out {out}", f"--files {WHOLE} from 1 to 4, got 5"),
    ("data generate --seed -1 --out {out}", f"--seed {WHOLE} of at least 0, got -1"),
    ("data generate --task ../x --out {out}", "argument --task: invalid choice: '../x'"),
    ("data generate --out {file}", "--out {file} is not a folder"),
    ("data generate --out {file}/sub", "--out {file}/sub: {file} is not a folder"),
    ("data generate --format xlsx --out {out}", "invalid choice: 'xlsx'"),
    (
        "build --push registry.example",
        "smray build runs the build.sh of the smray checkout",
        "installed elsewhere",
    ),
    ("run local --threshold nan", f"--threshold {POSITIVE}, got nan"),
    ("run local --threshold -1", f"--threshold {POSITIVE}, got -1"),
    ("run local --threshold inf", f"--threshold {POSITIVE}, got inf"),
    ("run local --threshold 1e309", f"--threshold {POSITIVE}, got inf"),
    ("run local --threshold 0", f"--threshold {POSITIVE}, got 0"),
    ("run local --gate 'accuracy >= 0.9'", "a regression model's metrics are rmse, mae, mape, r2"),
    (
        "run local --gate 'rmse <= 9000' --threshold 8000",
        "--threshold 8000.0 contradicts --gate 'rmse <= 9000'",
    ),
    ("run local --gate 'rmse >= nan'", "the threshold must be a finite number"),
    ("run local --tuning-trials 0", f"--tuning-trials {WHOLE} of at least 1, got 0"),
    ("run local --num-round 0", f"--num-round {WHOLE} of at least 1"),
    ("run local --num-round -1", f"--num-round {WHOLE} of at least 1"),
    ("run local --training-hosts 500", f"--training-hosts {WHOLE} from 1 to 16, got 500"),
    ("run local --processing-hosts 0", f"--processing-hosts {WHOLE} from 1 to 16"),
    ("run local --endpoint ../x", f"--endpoint '../x' {NOT_ENDPOINT}"),
    ("run local --endpoint {victim}", NOT_ENDPOINT),
    ("run local --image ''", "--image must be a non-empty string"),
    ("run local --generate 0", f"--generate {WHOLE} of at least 1, got 0"),
    ("run local --generate -5", f"--generate {WHOLE} of at least 1"),
    ("run local --input {missing_csv}", "input {missing_csv} does not exist"),
    ("run local --input {fifo_csv}", "input {fifo_csv} is not a .csv or .parquet file"),
    ("run local --input {file}", "input {file} is not a .csv or .parquet file"),
    ("run local --input {folder}", "no CSV or Parquet files in input folder {folder}"),
    ("run local --input {csv} --generate 5", "not allowed with argument --input"),
    ("run local --schema {folder}", "--schema {folder} is not a file"),
    ("run local --schema {fifo}", "--schema {fifo} is not a file"),
    ("run local --schema {missing}", "--schema {missing} does not exist"),
    ("run local --schema {torn}", "schema {torn} is not valid JSON"),
    ("run aws {aws} --spot-max-wait -1", "shorter than the training job's maximum run"),
    ("run aws {aws} --spot-max-wait 60", "shorter than the training job's maximum run"),
    ("run aws {aws} --schema {fifo}", "--schema {fifo} is not a file"),
    ("run aws {aws} --schema {torn}", "is not valid JSON"),
    ("run aws --image img --role r --bucket ../x", "--bucket '../x' is not an S3 bucket name"),
    ("run aws --image '' --role r --bucket bkt", "--image must be a non-empty string"),
    ("run aws {aws} --parameter Threshold", "--parameter expects NAME=VALUE, got 'Threshold'"),
    ("run aws {aws} --gate 'rmse >= 1'", "a lower rmse is better"),
    ("run aws {aws} --parameter Threshold=abc", "--parameter Threshold=abc is not a number"),
    ("run aws {aws} --region ../x", "region_name '../x' doesn't match a supported format"),
    ("run aws {aws}", "bucket bkt does not exist"),
    ("run aws --image img", "the following arguments are required: --role, --bucket"),
    ("pipeline show {aws} --spot-max-wait -1", "shorter than the training job's maximum run"),
    ("pipeline show {aws} --schema {folder}", "--schema {folder} is not a file"),
    ("pipeline show --image i --role r --bucket {victim}", "is not an S3 bucket name"),
    ("pipeline show {aws} --region ../x", "region_name '../x' doesn't match a supported format"),
    ("pipeline show {aws} --gate 'accuracy'", "expected '<metric> >= <number>'"),
    ("models list --group ../x", f"--group '../x' {NOT_GROUP}"),
    ("models list --group {victim}", NOT_GROUP),
    ("models list", "registry.db is not a usable registry", "garbage registry"),
    ("models describe 0", f"version {WHOLE} of at least 1, got 0"),
    ("models describe 7", "no model version housing/7"),
    ("models describe 1", "is not a usable registry", "garbage registry"),
    ("models describe 1 --group {victim}", NOT_GROUP),
    ("models approve -1", f"version {WHOLE} of at least 1, got -1"),
    ("models approve 3", "no model version housing/3"),
    ("models approve 3 --group ../x", NOT_GROUP),
    ("models approve 1 --reason ok", "is not a usable registry", "garbage registry"),
    ("models reject 0", f"version {WHOLE} of at least 1"),
    ("models reject 2 --reason 'worse'", "no model version housing/2"),
    ("models reject 1 --group a/b", NOT_GROUP),
    ("models --aws --region ../x list", "region_name '../x' doesn't match a supported format"),
    ("models --aws list --group ../x", NOT_GROUP),
    ("models --aws describe 0", f"version {WHOLE}"),
    ("deploy --name {victim}", NOT_ENDPOINT),
    ("deploy --name ../x --aws --role r", f"--name '../x' {NOT_ENDPOINT}"),
    ("deploy --group ../x", f"--group '../x' {NOT_GROUP}"),
    ("deploy --version 0", f"version {WHOLE} of at least 1, got 0"),
    ("deploy --port -1", f"--port {WHOLE} from 0 to 65535, got -1"),
    ("deploy --port 70000", f"--port {WHOLE} from 0 to 65535, got 70000"),
    ("deploy --aws", "--aws needs --role"),
    ("deploy --aws --role r --region ../x", "region_name '../x' doesn't match a supported format"),
    ("deploy", "no approved version in group housing"),
    ("deploy", "is not a usable registry", "garbage registry"),
    ("invoke {victim} {csv}", NOT_ENDPOINT),
    ("invoke http://127.0.0.1:abc {csv}", f"endpoint URL http://127.0.0.1:abc {NOT_URL}"),
    ("invoke http://127.0.0.1:99999 {csv}", NOT_URL),
    ("invoke http:// {csv}", NOT_URL),
    ("invoke http://ann:s3cret@127.0.0.1:abc {csv}", "http://***@127.0.0.1:abc is not"),
    ("invoke housing {csv}", "endpoint.json is not an endpoint record", "torn endpoint"),
    ("invoke housing {csv}", "endpoint.json is not an endpoint record", "mistyped endpoint"),
    ("invoke nothing {csv}", "no local endpoint named nothing"),
    ("invoke http://127.0.0.1:9 {folder}", "{folder} is not a file"),
    ("invoke http://127.0.0.1:9 {fifo_csv}", "{fifo_csv} is not a file"),
    ("invoke http://127.0.0.1:9 {missing_csv}", "{missing_csv} does not exist"),
    ("invoke http://127.0.0.1:9 {file}", "cannot tell the content type of {file}"),
    ("invoke http://127.0.0.1:9 {csv} --content-type '{crlf}'", "--content-type 'text/csv\\r\\nX-Injected"),
    ("invoke http://127.0.0.1:9 {csv} --accept '{crlf}'", "--accept 'text/csv\\r\\nX-Injected: 1' is not"),
    ("endpoints list", "endpoint.json is not an endpoint record", "torn endpoint"),
    ("endpoints list", "endpoint.json is not an endpoint record", "mistyped endpoint"),
    ("endpoints delete ../x", f"'../x' {NOT_ENDPOINT}"),
    ("endpoints delete {victim}", NOT_ENDPOINT),
    ("endpoints delete nothing", "no local endpoint named nothing"),
    ("endpoints delete housing", "is not an endpoint record", "torn endpoint"),
    ("retraining render --spot-max-wait -1", "shorter than the training job's maximum run"),
    ("retraining render --spot-max-wait 60", "shorter than the training job's maximum run"),
    ("retraining render --gate 'accuracy >= 0.9'", "a regression model's metrics are rmse, mae, mape, r2"),
    ("retraining render --schema {folder}", "--schema {folder} is not a file"),
    ("retraining render --graph {folder}", "--graph {folder} is not a file"),
    ("retraining render --graph {file}/g.png", "--graph {file}/g.png: {file} is not a folder"),
    (f"{RETRAIN} --input {{fifo}}", "the execution input {fifo} is not a file"),
    (f"{RETRAIN} --input {{folder}}", "the execution input {folder} is not a file"),
    (f"{RETRAIN} --input {{missing}}", "the execution input {missing} does not exist"),
    (f"{RETRAIN} --input {{torn}}", "cannot read the execution input {torn}"),
    (f"{RETRAIN} --input {{list}}", "the execution input {list} is not a JSON object"),
    (f"{RETRAIN} --input {{nan_input}}", f"Threshold {POSITIVE}, got nan"),
    ("retraining deploy --schedule 'rate(0 days)' --input {aws_input}", "a positive whole number"),
    (f"{RETRAIN} --input {{aws_input}} --name ../x", "--name '../x' is not a state machine name"),
    (f"{RETRAIN} --input {{aws_input}} --spot-max-wait -1", "shorter than the training job's maximum run"),
    (f"{RETRAIN} --input {{aws_input}} --region ../x", "region_name '../x' doesn't match"),
    ("retraining start --input {torn}", "cannot read the execution input {torn}"),
    ("retraining start --input {nan_input}", f"Threshold {POSITIVE}, got nan"),
    ("retraining start --input {aws_input} --name {victim}", "is not a state machine name"),
    ("retraining start --input {aws_input} --region ../x", "region_name '../x' doesn't match"),
    ("retraining executions --name ../x", "--name '../x' is not a state machine name"),
    ("retraining executions --region ../x", "region_name '../x' doesn't match"),
    (f"{LOCAL} --max-runs -1 --input {{local_input}}", f"--max-runs {WHOLE} of at least 0, got -1"),
    ("schedule run --every 'rate(0 days)' --input {local_input}", "a positive whole number"),
    (f"{LOCAL} --input {{local_input}} --gate 'auc >= 0.8'", "a regression model's metrics are"),
    (f"{LOCAL} --input {{fifo}}", "the schedule's input {fifo} is not a file"),
    (f"{LOCAL} --input {{folder}}", "the schedule's input {folder} is not a file"),
    (f"{LOCAL} --input {{missing}}", "the schedule's input {missing} does not exist"),
    (f"{LOCAL} --input {{torn}}", "cannot read the schedule's input {torn}"),
    (f"{LOCAL} --input {{list}}", "{list}: the input must be a JSON object"),
    ("schedule next -n 0 'rate(1 day)'", f"-n {WHOLE} of at least 1, got 0"),
    ("schedule next -n -1 'rate(1 day)'", f"-n {WHOLE} of at least 1, got -1"),
    ("schedule next 'rate(abc)'", "'rate(abc)' is not a schedule expression"),
    ("schedule next ''", "'' is not a schedule expression"),
    ("schedule next 'rate(100000000 days)'", "at most 1,830 days"),
    ("schedule next 'cron(² * * * ? *)'", "minutes value '²' is not in 0-59"),
    ("schedule next 'cron(0 12 ? * ٣ *)'", "day-of-week value '٣' is not in 1-7"),
    ("schedule history", "schedule-history.jsonl, line 1: not a record", "torn history"),
    ("schedule history", "schedule-history.jsonl, line 1: not a record", "mistyped history"),
    ("store repair ../x", "'../x' is not a feature group name"),
    ("store repair {victim}", "is not a feature group name"),
    ("store repair --store {file} housing", "--store {file} is not a folder"),
    ("store repair --store {folder} housing", "feature group housing does not exist in {folder}"),
    ("store repair housing", "feature group housing does not exist"),
    ("store repair housing", "feature-groups/housing.json cannot be read", "torn group"),
    ("store repair housing", "feature-groups/housing.json cannot be read", "empty group"),
    ("store repair housing", "catalog.sqlite is not a usable catalog", "garbage catalog"),
    ("runs", "experiments.jsonl, line 2: not a record", "mistyped runs"),
    ("runs", "experiments.jsonl, line 1: not a record", "runs from no time"),
    ("runs", "experiments.jsonl, line 1: not a record", "runs of text metrics"),
]

# Options any value of which smray passes on as it is, to what checks it before anything starts.
EXEMPT = {
    ("deploy", "--image"): "Docker refuses an image it does not have before the endpoint changes",
    ("deploy", "--role"): "SageMaker checks the role ARN in CreateModel, before anything is created",
    ("deploy", "--instance-type"): "SageMaker checks it in CreateEndpointConfig, before any endpoint",
    ("run aws", "--role"): "SageMaker checks it when the pipeline is upserted",
    ("run aws", "--instance-type"): "SageMaker checks it when the pipeline is upserted",
    ("pipeline show", "--role"): "printed only",
    ("pipeline show", "--instance-type"): "printed only",
    ("retraining render", "--glue-job"): "a Glue job name takes nearly any text; printed only",
    ("retraining deploy", "--glue-job"): "Glue checks it when the state machine starts the job",
    (
        "retraining deploy",
        "--gate",
    ): (
        "parsed against the schema at the input's SchemaUri after the input's checks; "
        "test_retraining_statemachine.py's refused deploys give it hostile values"
    ),
}


def _parsers(parser: ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, ArgumentParser]:
    """Every command and subcommand by its words ("schedule run"), groups ("schedule", "") included."""
    found = {" ".join(path): parser}
    for action in parser._actions:
        if isinstance(action, _SubParsersAction):
            for name, inner in action.choices.items():
                found |= _parsers(inner, (*path, name))
    return found


PARSERS = _parsers(cli.build_parser())
GROUPS = {
    p for p, parser in PARSERS.items() if any(isinstance(a, _SubParsersAction) for a in parser._actions)
}
COMMANDS = sorted(set(PARSERS) - GROUPS)


def _command(argv: list[str]) -> str:
    """The command a case runs: its words that name a subcommand, in order."""
    words: list[str] = []
    for word in argv:
        if " ".join([*words, word]) in PARSERS:
            words.append(word)
    return " ".join(words)


def _argv(case: str, files: dict[str, str]) -> list[str]:
    return shlex.split(case.format(**files))


def _valued(command: str) -> list[str]:
    """The options of `command` itself (not of the groups above it) that take a value."""
    return [
        a.option_strings[0]
        for a in PARSERS[command]._actions
        if a.option_strings and a.nargs != 0 and not isinstance(a, _SubParsersAction)
    ]


def _numeric(command: str) -> list[tuple[str, type]]:
    """The number-valued options and arguments of `command`: the option's name, or "" for an argument."""
    return [
        (a.option_strings[0] if a.option_strings else "", a.type)
        for a in PARSERS[command]._actions
        if a.type in (int, float)
    ]


def _run_case(refused, files, monkeypatch, own_smray_home, case, says, state=None):
    if state:
        STATES[state](own_smray_home, monkeypatch)
    line = refused(*_argv(case, files))
    assert says.format(**files) in line, line


@pytest.mark.timeout(60)  # a FIFO read, or anything else that waits for ever, fails the case
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} [{c[2]}]" if len(c) > 2 else c[0] for c in CASES])
def test_every_command_refuses_hostile_input_in_one_line(refused, files, monkeypatch, own_smray_home, case):
    _run_case(refused, files, monkeypatch, own_smray_home, *case)


# Generated from the parser, so a new command or option is covered the day it appears.
GENERATED = [
    *(
        (" ".join([group, "--no-such-option"]).strip(), "smray")
        for group in sorted(PARSERS)
        if group != "build"
    ),
    *((group, "the following arguments are required") for group in sorted(GROUPS)),
    *(
        (" ".join(w for w in (command, option, value) if w), f"invalid {kind.__name__} value: '{value}'")
        for command in COMMANDS
        for option, kind in _numeric(command)
        for value in (["abc", "1e309"] if kind is int else ["abc"])
    ),
]


@pytest.mark.parametrize(("case", "says"), GENERATED, ids=[c for c, _ in GENERATED])
def test_argparse_refusals_are_one_line_too(refused, files, monkeypatch, own_smray_home, case, says):
    _run_case(refused, files, monkeypatch, own_smray_home, case, says)


def test_every_command_has_hostile_cases(files):
    cased = {_command(_argv(case[0], files)) for case in CASES}
    assert not sorted(set(COMMANDS) - cased), "commands without a case in CASES"
    assert not sorted(cased - set(COMMANDS)), "cases of commands that are no more"


def test_every_option_is_given_hostile_values(files):
    given: dict[str, set[str]] = {}
    for case in CASES:
        argv = _argv(case[0], files)
        given.setdefault(_command(argv), set()).update(argv)
    missing = [
        (command, option)  # a group's option (models --region) counts when any of its commands' cases give it
        for command in sorted(PARSERS)
        for option in _valued(command)
        if (command, option) not in EXEMPT
        and not any(
            option in words for c, words in given.items() if f"{c} ".startswith(f"{command} ".lstrip())
        )
    ]
    assert not missing, "options no case gives a hostile value (add one, or say in EXEMPT why none is needed)"
    assert not [key for key in EXEMPT if key[1] not in _valued(key[0])], "EXEMPT options that are no more"


# ---- what the matrix cannot say in one case ------------------------------------------------------------


def test_the_scheduler_s_input_is_held_to_the_same_rules_as_run_local(refused, tmp_path):
    for given, message in [
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
    ]:
        (tmp_path / "input.json").write_text(json.dumps({"DataUri": str(tmp_path)} | given))
        line = refused(*shlex.split(LOCAL), "--max-runs", "1", "--input", str(tmp_path / "input.json"))
        assert message in line and str(tmp_path / "input.json") in line


def test_a_schema_of_more_features_than_feature_store_takes_is_refused(refused, tmp_path):
    raw = schema_mod.housing().to_dict()
    raw["features"] = [{"name": f"f{i}", "type": "fractional"} for i in range(2_501)]
    (tmp_path / "wide.json").write_text(json.dumps(raw))
    assert "2,504 columns with the target, record id and event time: a Feature Store" in refused(
        "run", "local", "--schema", str(tmp_path / "wide.json")
    )


def test_names_that_climb_out_never_reach_what_they_name(refused, own_smray_home, tmp_path):
    victim = own_smray_home.parent / "victim"  # <home>/endpoints/../../victim
    victim.mkdir()
    (victim / "endpoint.json").write_text("{}")
    (tmp_path / "rows.csv").write_text("1,2\n")
    assert "'../../victim' is not a valid endpoint name" in refused("endpoints", "delete", "../../victim")
    assert "is not a valid endpoint name" in refused("invoke", "../../victim", str(tmp_path / "rows.csv"))
    assert (victim / "endpoint.json").is_file()
    (own_smray_home / "x.json").write_text("{}")  # what store repair's climbing names would reach
    for name in ("../../x", "a/b", ".", "x\n"):
        assert "is not a feature group name" in refused("store", "repair", name)


def test_an_endpoint_that_is_down_is_a_platform_error(refused, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "rows.csv").write_text("1,2\n")
    line = refused("invoke", f"http://127.0.0.1:{port}", str(tmp_path / "rows.csv"))
    assert line.startswith(f"smray: platform error: http://127.0.0.1:{port} did not answer")
    line = refused("invoke", f"http://ann:s3cret@127.0.0.1:{port}", str(tmp_path / "rows.csv"))
    assert line.startswith(f"smray: platform error: http://***@127.0.0.1:{port} did not answer")


def test_corrupt_state_is_named_with_the_file_and_what_to_do(refused, own_smray_home, monkeypatch):
    STATES["torn endpoint"](own_smray_home, monkeypatch)
    assert f"{own_smray_home}/endpoints/housing/endpoint.json is not an endpoint record" in refused(
        "endpoints", "list"
    )
    STATES["garbage registry"](own_smray_home, monkeypatch)
    assert f"{own_smray_home}/registry/registry.db is not a usable registry" in refused("models", "list")
    (own_smray_home / "experiments.jsonl").write_text('{"execution": "e0", "sta\n' + RUN)
    assert f"{own_smray_home}/experiments.jsonl, line 1: not a record" in refused("runs")


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


def _sqlite_full(tmp_path: Path) -> sqlite3.OperationalError:
    """SQLite's own full-disk error, as a write past a database's size limit raises it."""
    conn = sqlite3.connect(tmp_path / "small.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 2")
    try:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite took a row past the database's size limit")


def test_a_full_disk_under_sqlite_is_a_platform_error(refused, monkeypatch, tmp_path):
    from smray.registry.local import LocalRegistry

    full = _sqlite_full(tmp_path)
    assert str(full) == "database or disk is full"

    def set_status(*args, **kwargs):
        raise full

    monkeypatch.setattr(LocalRegistry, "set_status", set_status)
    assert refused("models", "approve", "1") == "smray: platform error: database or disk is full"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a mode-000 file: the FIFO and folder cases stand in"
)
def test_a_file_its_owner_cannot_read_is_refused(refused, tmp_path):
    (tmp_path / "input.json").write_text("{}")
    (tmp_path / "input.json").chmod(0)
    assert "cannot read the schedule's input" in refused(
        *shlex.split(LOCAL), "--input", str(tmp_path / "input.json")
    )


@pytest.mark.parametrize("value", ["~no-such-user-smray/home", "file"])
def test_a_bad_smray_home_is_named(refused, monkeypatch, tmp_path, value):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SMRAY_HOME", value if value.startswith("~") else str(tmp_path / value))
    assert "SMRAY_HOME" in refused("schedule", "history")


def test_a_malformed_mlflow_uri_is_refused_before_the_run(refused, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:s3cret@mlflow.example:port/")
    line = refused("run", "local")
    assert "MLFLOW_TRACKING_URI https://***@mlflow.example:port/ is not" in line and "s3cret" not in line
