"""Small real classifiers with string features (XGBoost's native categoricals, encoded by the contract's
Transform) written as `train` writes a model, and raw rows for them: text categories, text labels and
missing values."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from smray import schema, transform
from smray.schema import Task

STATES = ("CA", "NY", "TX", "WA")
PLANS = ("basic", "premium, annual")  # a comma: CSV must quote it
TIERS = ("bronze", "gold", "silver")


def table_schema(task: Task) -> schema.Schema:
    """churn (binary: "yes" the positive label) or tier (multiclass) from two text features, two numbers."""
    binary = task is Task.BINARY
    return schema.parse(
        {
            "name": "churn" if binary else "tier",
            "target": "churned" if binary else "tier",
            "task": task.value,
            **({"positive": "yes"} if binary else {}),
            "features": [
                {"name": "state", "type": "string"},
                {"name": "minutes", "type": "fractional"},
                {"name": "plan", "type": "string"},
                {"name": "calls", "type": "integral"},
            ],
        }
    )


def raw_rows(count: int, seed: int = 5, missing: float = 0.1) -> pd.DataFrame:
    """Raw features in the schema's order: text categories and numbers, about `missing` of them empty."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "state": rng.choice(STATES, count).astype(object),
            "minutes": rng.normal(200, 50, count).round(1),
            "plan": rng.choice(PLANS, count).astype(object),
            "calls": rng.integers(0, 10, count).astype("float64"),
        }
    )
    for column in frame.columns:
        frame.loc[rng.random(count) < missing, column] = None if frame[column].dtype == object else np.nan
    return frame


def _target(frame: pd.DataFrame, task: Task, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed + 1)
    score = (
        (frame["state"] == "CA") * 1.5
        + (frame["plan"] == PLANS[1]) * -1.0
        + frame["minutes"].fillna(200).sub(200).div(50)
        + frame["calls"].fillna(5).sub(5).div(3)
        + rng.normal(0, 0.5, len(frame))
    )
    if task is Task.BINARY:
        return pd.Series(np.where(score > 0.3, "yes", "no"), index=frame.index)
    return pd.Series(np.array(TIERS)[np.digitize(score, [-0.5, 0.8])], index=frame.index)


def build_classifier(folder: Path, task: Task, rows: int = 800, seed: int = 3, rounds: int = 20) -> Path:
    """Fits the preprocessing on the rows (categories and labels) and a booster on their encoding."""
    table = table_schema(task)
    frame = raw_rows(rows, seed)
    target = _target(frame, task, seed)
    numeric = [n for n in table.feature_names if n not in table.categorical]
    scale = {f: transform.Scale(float(frame[f].mean()), float(frame[f].std(ddof=0))) for f in numeric}
    categories = {f: transform.category_set(frame[f].dropna()) for f in table.categorical}
    labels = transform.label_set(target, task, table.positive)
    prep = transform.Transform(table, scale, categories, labels)
    params: dict = {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic"}
    if task is Task.MULTICLASS:
        params = params | {"objective": "multi:softprob", "num_class": len(labels)}
    data = xgboost.DMatrix(
        prep.encode(frame),
        label=prep.encode_target(target),
        feature_names=table.feature_names,
        feature_types=prep.feature_types,
        enable_categorical=True,
    )
    booster = xgboost.train(params, data, num_boost_round=rounds)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / "model.json")
    prep.save(folder)
    (folder / "metadata.json").write_text(json.dumps({"engine": "test", "rounds": rounds}))
    return folder
