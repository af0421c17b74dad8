"""A binary and a multiclass table with text features (and missing values) through the `train` and
`evaluate` modes, as preprocess hands them over: encoded splits and preprocessing.json, built here with
the contract's Transform."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost

from smray import model_artifact, schema, transform
from smray.contracts import train as train_contract
from smray.contracts.resource_config import local
from smray.entrypoints.modes import evaluate, train
from smray.errors import UserError
from smray.schema import Task

STATES = ("CA", "NY", "TX", "WA", "OR")


def table(task: Task, rows: int, seed: int) -> tuple[schema.Schema, pd.DataFrame]:
    """A churn-like table: state and plan as text (some missing), minutes and calls as numbers (some
    missing), a target learnable from the text features and the numbers, with noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "state": rng.choice(STATES, rows).astype(object),
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
            "minutes": rng.normal(200, 50, rows).round(1),
            "calls": rng.integers(0, 10, rows).astype("float64"),
        }
    )
    score = (
        (frame["state"] == "CA") * 2.0
        - (frame["plan"] == "pro") * 1.5
        + (frame["minutes"] - 200) / 40
        + rng.normal(0, 0.7, rows)
    )
    for column in frame.columns:
        frame.loc[rng.random(rows) < 0.05, column] = None if frame[column].dtype == object else np.nan
    if task is Task.BINARY:
        frame["churned"] = np.where(score > 0.5, "yes", "no")
    else:
        frame["tier"] = np.select([score < -0.5, score < 1.0], ["bronze", "silver"], "gold")
    raw = {
        "name": "churn",
        "target": "churned" if task is Task.BINARY else "tier",
        "task": task.value,
        "features": [
            {"name": "state", "type": "string"},
            {"name": "plan", "type": "string"},
            {"name": "minutes", "type": "fractional"},
            {"name": "calls", "type": "integral"},
        ],
    }
    if task is Task.BINARY:
        raw["positive"] = "yes"
    return schema.parse(raw), frame


def fitted(table_schema: schema.Schema, frame: pd.DataFrame) -> transform.Transform:
    """The preprocessing as preprocess learns it: on the train rows only."""
    scale = {
        c: transform.Scale(float(frame[c].mean()), float(frame[c].std(ddof=0)))
        for c in table_schema.numeric_columns
        if c != table_schema.target
    }
    categories = {
        c: transform.category_set(transform.as_text(frame[c]).dropna()) for c in table_schema.categorical
    }
    labels = transform.label_set(
        transform.as_text(frame[table_schema.target]).dropna(), table_schema.task, table_schema.positive
    )
    return transform.Transform(table_schema, scale, categories, labels)


def encoded(prep: transform.Transform, frame: pd.DataFrame) -> pd.DataFrame:
    """A split as preprocess writes it: the target's label positions first, then the encoded features."""
    out = prep.apply(frame[prep.schema.feature_names])
    out.insert(0, prep.schema.target, prep.encode_target(frame[prep.schema.target]))
    return out


def channels(opt_ml: Path, task: Task, rows: int = 3_000, unseen: bool = False) -> dict[str, pd.DataFrame]:
    """train/validation/transform channels under opt_ml; the raw and the encoded test rows (`unseen`: the
    first test row's state one the train split never had)."""
    table_schema, frame = table(task, rows, seed=3)
    cut = [int(rows * 0.7), int(rows * 0.85)]
    parts = {"train": frame.iloc[: cut[0]], "validation": frame.iloc[cut[0] : cut[1]]}
    prep = fitted(table_schema, parts["train"])
    root = opt_ml / "input" / "data"
    for name, part in parts.items():
        (root / name).mkdir(parents=True)
        encoded(prep, part).to_parquet(root / name / "part-0.parquet", index=False)
    prep.save(root / train_contract.TRANSFORM)
    test = frame.iloc[cut[1] :].reset_index(drop=True)
    if unseen:
        test.loc[0, "state"] = "AK"  # scored as a missing state
    return {"raw": test, "encoded": encoded(prep, test)}


def run_train(opt_ml: Path, **hp) -> dict:
    (opt_ml / "input" / "config").mkdir(parents=True, exist_ok=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in hp.items()})
    )
    train.run(local(), train.parser().parse_args([]))
    return json.loads((opt_ml / "model" / model_artifact.METADATA_FILE).read_text())


def run_evaluate(model: Path, test: pd.DataFrame, folder: Path, raw: bool) -> dict:
    (folder / "test").mkdir(parents=True)
    if raw:
        test.to_csv(folder / "test" / "test.csv", index=False)
    else:
        test.to_parquet(folder / "test" / "test.parquet", index=False)
    out = folder / "evaluation"
    args = ["--model", str(model), "--test", str(folder / "test"), "--output", str(out)]
    evaluate.run(local(), evaluate.parser().parse_args(args + (["--raw"] if raw else [])))
    return json.loads((out / "evaluation.json").read_text())


def test_a_binary_table_trains_on_auc_with_native_categories_and_evaluates(opt_ml, tmp_path, capsys):
    test = channels(opt_ml, Task.BINARY, unseen=True)
    meta = run_train(opt_ml, num_round=300, early_stopping_rounds=10)
    assert (meta["task"], meta["objective"], meta["labels"]) == ("binary", "binary:logistic", ["no", "yes"])
    assert meta["hyperparameters"]["eval_metric"] == "auc"
    auc = meta["history"]["validation"]["auc"]
    assert set(meta["history"]["validation"]) == {"auc", "logloss", "error"}
    # early stopping kept the round of the highest validation AUC (a lower-is-better rule keeps round 0)
    assert meta["best_iteration"] == int(np.argmax(auc)) > 0
    assert meta["validation_auc"] == pytest.approx(max(auc)) and max(auc) > 0.85
    booster = xgboost.Booster(model_file=str(opt_ml / "model" / "model.json"))
    assert booster.feature_types == ["c", "c", "q", "q"]  # the text features as XGBoost's categories
    out = capsys.readouterr().out
    last = [line for line in out.splitlines() if line.startswith("[")][-1]
    found = {
        d["Name"]: float(m.group(1))
        for d in train_contract.metric_definitions(Task.BINARY)
        if (m := re.match(d["Regex"], last.replace("\t", "#011")))
    }
    name, direction = train_contract.objective(Task.BINARY)
    assert (name, direction) == ("validation:auc", "Maximize")
    assert found[name] == pytest.approx(meta["validation_auc"], abs=1e-5)  # the model's round, last
    assert set(found) == {f"{s}:{m}" for s in ("train", "validation") for m in ("auc", "logloss", "error")}

    encoded_result = run_evaluate(opt_ml / "model", test["encoded"], tmp_path / "enc", raw=False)
    raw_result = run_evaluate(opt_ml / "model", test["raw"], tmp_path / "raw", raw=True)
    assert raw_result == encoded_result  # the raw table through the model's preprocessing: the same rows
    m = raw_result["binary_classification_metrics"]
    assert m["auc"]["value"] > 0.85 and m["accuracy"]["value"] > 0.75
    matrix = m["confusion_matrix"]
    assert set(matrix) == {"no", "yes"} and sum(sum(r.values()) for r in matrix.values()) == len(test["raw"])
    predicted = model_artifact.load(opt_ml / "model").predict(test["raw"], scaled=False)
    assert matrix["yes"]["yes"] == int(((predicted > 0.5) & (test["raw"]["churned"] == "yes")).sum())
    shown = sorted(p.name for p in (tmp_path / "raw" / "evaluation").iterdir())
    assert shown == [
        "confusion_matrix.png",
        "evaluation.json",
        "feature_importance.png",
        "precision_recall_curve.png",
        "report.html",
        "roc_curve.png",
        "training_curve.png",
    ]
    page = (tmp_path / "raw" / "evaluation" / "report.html").read_text()
    assert 'src="roc_curve.png"' in page and "<td>auc</td>" in page
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.match(r"evaluate: 450 test rows: accuracy 0\.\d{3} \(± 0\.0\d+\), auc 0\.\d+, f1 ", line), line


def test_a_multiclass_table_trains_softprob_on_mlogloss_and_evaluates(opt_ml, tmp_path, capsys):
    test = channels(opt_ml, Task.MULTICLASS)
    meta = run_train(opt_ml, num_round=200, early_stopping_rounds=10)
    assert (meta["task"], meta["objective"]) == ("multiclass", "multi:softprob")
    assert meta["labels"] == ["bronze", "gold", "silver"] and meta["hyperparameters"]["num_class"] == 3
    loss = meta["history"]["validation"]["mlogloss"]
    assert meta["best_iteration"] == int(np.argmin(loss))
    assert set(meta["history"]["validation"]) == {"mlogloss", "merror"}
    model = model_artifact.load(opt_ml / "model")
    assert model.predict(test["raw"], scaled=False).shape == (len(test["raw"]), 3)

    result = run_evaluate(opt_ml / "model", test["encoded"], tmp_path / "enc", raw=False)
    m = result["multiclass_classification_metrics"]
    assert set(m) == {"accuracy", "weighted_precision", "weighted_recall", "weighted_f1", "logloss"} | {
        "confusion_matrix"
    }
    assert m["accuracy"]["value"] > 0.6 and 0 < m["accuracy"]["standard_deviation"] < 0.05
    assert list(m["confusion_matrix"]) == ["bronze", "gold", "silver"]
    shown = sorted(p.name for p in (tmp_path / "enc" / "evaluation").glob("*.png"))
    assert shown == ["confusion_matrix.png", "feature_importance.png", "training_curve.png"]
    assert "evaluate: 450 test rows: accuracy " in capsys.readouterr().out
    assert run_evaluate(opt_ml / "model", test["raw"], tmp_path / "raw", raw=True) == result


def test_a_hyperparameter_that_contradicts_the_task_is_a_one_line_error(opt_ml):
    channels(opt_ml, Task.BINARY, rows=500)
    with pytest.raises(
        UserError, match=r"^hyper-parameter eval_metric=rmse does not fit a binary task: use "
    ):
        run_train(opt_ml, eval_metric="rmse")
    with pytest.raises(UserError, match="objective=reg:squarederror does not fit a binary task"):
        run_train(opt_ml, objective="reg:squarederror")
    assert not (opt_ml / "model" / "model.json").exists()


def test_a_tuned_binary_model_keeps_the_trial_of_the_highest_auc(ray_cluster, opt_ml, capsys):
    channels(opt_ml, Task.BINARY, rows=1_500)
    meta = run_train(opt_ml, tune="true", tune_trials=4, num_round=30, tune_grace_rounds=5)
    scores = [t["score"] for t in meta["tuning_trials"]]
    assert scores == sorted(scores, reverse=True)  # best first: the highest AUC
    for t in meta["tuning_trials"]:
        assert t["score"] <= 1.0
    for name, value in meta["tuning_trials"][0]["config"].items():
        assert meta["hyperparameters"][name] == value


def test_evaluate_refuses_test_rows_whose_label_the_model_never_learned(opt_ml, tmp_path):
    test = channels(opt_ml, Task.BINARY, rows=800)
    run_train(opt_ml, num_round=20)
    raw = test["raw"].copy()
    raw.loc[[3, 5], "churned"] = ["maybe", None]
    with pytest.raises(
        UserError, match=r"target churned is missing, or a label the model never learned, in 2 "
    ):
        run_evaluate(opt_ml / "model", raw, tmp_path, raw=True)
    assert not (tmp_path / "evaluation" / "evaluation.json").exists()


def test_train_refuses_a_target_that_is_not_a_label_position(opt_ml):
    channels(opt_ml, Task.BINARY, rows=500)
    path = opt_ml / "input" / "data" / "train" / "part-0.parquet"
    frame = pd.read_parquet(path)
    frame.loc[7, "churned"] = 2.0
    frame.to_parquet(path, index=False)
    with pytest.raises(
        UserError, match=r"channel train: target churned has the value 2, not a label's position"
    ):
        run_train(opt_ml, num_round=5)
