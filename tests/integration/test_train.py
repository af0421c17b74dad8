import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import xgboost

from smray import hyperparameters, model_artifact
from smray.contracts import train as train_contract
from smray.contracts.resource_config import local
from smray.entrypoints.modes import train
from smray.errors import UserError
from smray.workstation import datagen


def make_channels(root: Path, rows: int, seed: int = 1) -> Path:
    """Train/validation channels as a user would bring them: CSV with a header, 80/20."""
    frame = datagen.housing_frame(rows, seed=seed, with_ids=False)
    cut = int(rows * 0.8)
    channels = root / "input" / "data"
    for name, part in (("train", frame.iloc[:cut]), ("validation", frame.iloc[cut:])):
        (channels / name).mkdir(parents=True)
        half = len(part) // 2
        part.iloc[:half].to_csv(channels / name / "a.csv", index=False)
        part.iloc[half:].to_parquet(channels / name / "b.parquet", index=False)
    return channels


def run_train(opt_ml: Path, **hp) -> dict:
    """Channels as a user brings them, without preprocess's transform channel: the target is named."""
    (opt_ml / "input" / "config").mkdir(parents=True, exist_ok=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in ({"target": "PRICE"} | hp).items()})
    )
    train.run(local(), train.parser().parse_args([]))
    return json.loads((opt_ml / "model" / model_artifact.METADATA_FILE).read_text())


def test_defaults_reach_the_quality_bar_on_100k_rows(opt_ml, capsys):
    make_channels(opt_ml, 100_000)
    meta = run_train(opt_ml)
    assert meta["engine"] == "xgboost"
    assert meta["validation_rmse"] < 15_000, meta["validation_rmse"]
    assert sorted(p.name for p in (opt_ml / "model").iterdir()) == [
        "metadata.json",
        "model.json",
        "preprocessing.json",
    ]
    booster = xgboost.Booster(model_file=str(opt_ml / "model" / "model.json"))
    assert booster.num_boosted_rounds() == meta["best_iteration"] + 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == meta["rounds"] + 1  # every round, then the best round's again (the model's)
    rmse_definitions = [d for d in train_contract.metric_definitions() if d["Name"].endswith(":rmse")]
    assert len(rmse_definitions) == 2
    for definition in rmse_definitions:
        assert re.match(definition["Regex"], lines[-1]), definition
        assert re.match(definition["Regex"], lines[-1].replace("\t", "#011")), definition
    value = float(
        re.match(train_contract.metric_definitions()[2]["Regex"], lines[meta["best_iteration"]]).group(1)
    )
    assert value == pytest.approx(meta["validation_rmse"], rel=1e-4)
    # SageMaker's tuner ranks a trial by the last value its regex finds: the model's, not the last round's
    validation = train_contract.metric_definitions()[2]
    assert validation["Name"] == "validation:rmse"
    last = re.findall(validation["Regex"], out.replace("\t", "#011"), flags=re.MULTILINE)[-1]
    assert float(last) == pytest.approx(meta["validation_rmse"], rel=1e-4)
    assert meta["rounds"] > meta["best_iteration"] + 1  # early stopping ran past the best round


def test_metric_regexes_take_the_number_only_when_tabs_are_logged_as_011():
    line = "[12]#011train-rmse:123.4#011validation-rmse:150.25#011validation-mae:99"
    found = {
        d["Name"]: m.group(1)
        for d in train_contract.metric_definitions()
        if (m := re.match(d["Regex"], line))
    }
    assert found["train:rmse"] == "123.4" and found["validation:rmse"] == "150.25"
    assert found["validation:mae"] == "99"


def test_tuning_trials_sharing_one_checkpoint_uri_each_resume_their_own(opt_ml, caplog, capsys, monkeypatch):
    """A tuning job syncs one checkpoint prefix into every trial; trial 2 must not overwrite trial 1's."""
    make_channels(opt_ml, 5_000)
    monkeypatch.setenv("TRAINING_JOB_NAME", "hp-001-aaaaaaaa")
    run_train(opt_ml, num_round=30, early_stopping_rounds=0, checkpoint_every=10)
    monkeypatch.setenv("TRAINING_JOB_NAME", "hp-002-bbbbbbbb")
    run_train(opt_ml, num_round=30, early_stopping_rounds=0, checkpoint_every=10, max_depth=3)
    caplog.set_level("INFO", logger="smray")
    capsys.readouterr()
    monkeypatch.setenv("TRAINING_JOB_NAME", "hp-001-aaaaaaaa")  # trial 1, restarted after a spot interruption
    meta = run_train(opt_ml, num_round=40, early_stopping_rounds=0, checkpoint_every=10)
    assert "resuming from a checkpoint after 30 rounds" in caplog.text
    assert meta["rounds"] == 40


def test_checkpoints_every_k_rounds_and_a_restart_resumes(opt_ml, caplog, capsys):
    make_channels(opt_ml, 5_000)
    meta = run_train(opt_ml, num_round=30, early_stopping_rounds=0, checkpoint_every=10)
    saved = json.loads((opt_ml / "checkpoints" / "checkpoint.json").read_text())
    assert saved["rounds"] == 30 and meta["rounds"] == 30
    caplog.set_level("INFO", logger="smray")
    capsys.readouterr()
    meta = run_train(opt_ml, num_round=45, early_stopping_rounds=0, checkpoint_every=10)
    assert "resuming from a checkpoint after 30 rounds" in caplog.text
    assert meta["rounds"] == 45
    trained = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    # only the rounds the checkpoint did not have, then the best round's metrics again (the model's)
    assert trained == [*(f"[{i}]" for i in range(30, 45)), f"[{meta['best_iteration']}]"]
    caplog.clear()
    run_train(opt_ml, num_round=45, early_stopping_rounds=0, checkpoint_every=10, max_depth=3)
    assert "other hyper-parameters" in caplog.text  # another model: starts afresh


def test_a_resumed_run_reports_what_an_uninterrupted_run_reports(opt_ml, tmp_path):
    """Early stopping across a restart: the best iteration lies before the checkpoint in one case and
    after it in the other; both end as the run that was never interrupted ends."""
    make_channels(opt_ml, 4_000)
    hp = {"num_round": 400, "early_stopping_rounds": 8, "checkpoint_every": 5, "eta": 0.3}
    whole = run_train(opt_ml, **hp)
    best, stopped = whole["best_iteration"], whole["rounds"]
    assert best > 15 and stopped == best + 9, whole  # it did stop early
    model = (opt_ml / "model" / "model.json").read_bytes()
    for interrupted_after in (best // 5 * 5 - 5, (best + 5) // 5 * 5):  # before and after the best
        shutil.rmtree(opt_ml / "checkpoints")
        run_train(opt_ml, **hp | {"num_round": interrupted_after})  # the job "dies" here
        resumed = run_train(opt_ml, **hp)
        for key in ("best_iteration", "rounds", "validation_rmse"):
            assert resumed[key] == whole[key], (interrupted_after, key, resumed, whole)
        assert (opt_ml / "model" / "model.json").read_bytes() == model


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"max_dept": "4"}, r"unknown hyper-parameter\(s\) max_dept; known: alpha"),
        ({"eta": "0"}, r"eta=0.0: outside the allowed range \(0, 1\]"),
        ({"max_depth": "4.5"}, "max_depth='4.5': expected int"),
        ({"objective": "reg:linear"}, "expected one of"),
        ({"subsample": "nan"}, "subsample is NaN"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(hp, message):
    with pytest.raises(UserError, match=message):
        hyperparameters.resolve(hp)


def test_sagemaker_reserved_hyperparameters_are_accepted():
    values = hyperparameters.resolve({"_tuning_objective_metric": "validation:rmse", "eta": "0.3"})
    assert values["eta"] == 0.3 and "_tuning_objective_metric" not in values


def test_missing_channel_and_missing_target_are_clear(opt_ml):
    with pytest.raises(UserError, match=r"channel train folder .* does not exist"):
        run_train(opt_ml)
    make_channels(opt_ml, 1_000)
    with pytest.raises(UserError, match="channel train: no target column 'VALUE'"):
        run_train(opt_ml, target="VALUE")
    assert not (opt_ml / "model" / "model.json").exists()


def test_tuning_runs_trials_and_keeps_the_best(ray_cluster, opt_ml, capsys):
    make_channels(opt_ml, 5_000)
    meta = run_train(opt_ml, tune="true", tune_trials=5, num_round=40, tune_grace_rounds=5)
    trials = meta["tuning_trials"]
    assert len(trials) == 5
    assert [t["score"] for t in trials] == sorted(t["score"] for t in trials)
    expected = hyperparameters.sample_trials(5, meta["hyperparameters"]["seed"])
    assert sorted(map(str, (t["config"] for t in trials))) == sorted(map(str, expected))
    for t in trials:  # the ladder's rungs are at 5 and 15 rounds
        ended = {
            "num_round": t["rounds"] == 40,
            "early stopping": t["rounds"] < 40,
            "ladder": t["rounds"] in (5, 15),
        }
        assert ended[t["ended_by"]] and t["host"] == "algo-1", t
    for name, value in trials[0]["config"].items():
        assert meta["hyperparameters"][name] == value
    out = capsys.readouterr().out
    assert "tuning trials (best first):" in out
    assert out.count("tuning: trial ") == 5  # progress: a line as each trial ends


def test_a_bad_channel_read_by_a_trial_is_the_user_s_one_line_error(ray_cluster, opt_ml):
    channels = make_channels(opt_ml, 1_000)
    frame = pd.read_csv(channels / "validation" / "a.csv", dtype=str)
    frame.loc[3, "SQUARE_FEET"] = "lots"
    frame.to_csv(channels / "validation" / "a.csv", index=False)
    with pytest.raises(UserError) as raised:
        run_train(opt_ml, tune="true", tune_trials=2, num_round=10)
    assert type(raised.value) is UserError  # the error itself, not Ray's wrapper with a remote traceback
    assert str(raised.value) == "channel validation: column SQUARE_FEET has a non-numeric value 'lots'"
    assert not (opt_ml / "model" / "model.json").exists()
