"""`evaluate`: model + test split -> `evaluation.json` (the shape SageMaker model-quality conditions and
model metrics read: `smray.metrics`) and a report: feature importance and the training curve for every
task; predicted-vs-actual and residuals for a regression; the confusion matrix for a classification, and
for a binary one its ROC and precision-recall curves; as PNG, and `report.html` showing them.

A binary model predicts its positive label where P(positive) is above 0.5, a multiclass model its most
probable label. The test split is preprocess's (encoded: category codes, label positions), or with `--raw`
a table as the user has it (text categories and labels). A test row without a target, or whose label the
model never learned, cannot be scored: it is an error naming how many there are, never dropped unseen.

Runs on the head only: the test split is small next to training, and the model is one booster."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from smray import metrics, model_artifact, tables
from smray.contracts import evaluate as contract
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError
from smray.reporting import evaluation as pictures
from smray.schema import Task

EVALUATION_FILE = contract.EVALUATION_FILE


def parser() -> argparse.ArgumentParser:
    proc = processing_root()
    p = argparse.ArgumentParser(prog="smray-entrypoint evaluate", description=__doc__)
    p.add_argument("--model", type=Path, default=proc / contract.MODEL, help="model folder or model.tar.gz")
    p.add_argument(
        "--test", type=Path, default=proc / contract.TEST, help="test split (Parquet or CSV, header)"
    )
    p.add_argument(
        "--output", type=Path, default=proc / contract.OUTPUT, help="evaluation.json and the report"
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="the test data holds raw features and targets: apply the model's preprocessing first "
        "(default: already encoded, as preprocess writes it)",
    )
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    model = model_artifact.load(opts.model)
    frame = pd.concat([tables.read(f) for f in tables.list_files(opts.test, what="test")], ignore_index=True)
    tables.require_columns(frame, model.transform.schema.value_columns, opts.test)
    features, actual = _encoded(frame, model, opts.test, raw=opts.raw)
    predicted = model.predict(features, scaled=True)
    result = metrics.evaluate(model.task, actual, predicted, model.labels)

    opts.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=opts.output, prefix=".writing-") as scratch:
        work = Path(scratch)
        shown = _pictures(model, result, actual, predicted, work)
        facts = {
            "test rows": f"{len(actual):,}",
            "target": model.transform.schema.target,
            "task": model.task.value,
            "engine": str(model.metadata.get("engine", "?")),
            "best iteration": str(model.metadata.get("best_iteration", "?")),
        }
        if model.labels:
            facts["labels"] = ", ".join(model.labels)
        (work / "report.html").write_text(pictures.page("Model evaluation", result, shown, facts))
        (work / EVALUATION_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        for item in work.iterdir():  # evaluation.json last: its presence means the report is complete
            if item.name != EVALUATION_FILE:
                shutil.move(item, opts.output / item.name)
        shutil.move(work / EVALUATION_FILE, opts.output / EVALUATION_FILE)
    report = opts.output / "report.html"
    print(f"evaluate: {len(actual):,} test rows: {pictures.headline(result)}; report {report}", flush=True)


def _encoded(
    frame: pd.DataFrame, model: model_artifact.Model, source: Path, raw: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """The test rows' features as the model reads them (encoded) and their targets (the numbers, or the
    labels' positions). Raw data is encoded by the model's preprocessing; its text stays text until then."""
    schema, prep = model.transform.schema, model.transform
    numeric = schema.numeric_columns if raw else schema.value_columns
    values = frame[schema.value_columns].copy()
    for column in numeric:
        values[column] = _numbers(values[column], column, source)
    features = pd.DataFrame(prep.encode(values), columns=model.features) if raw else values[model.features]
    if raw and schema.task.classification:
        actual = prep.encode_target(values[schema.target])
    else:
        actual = values[schema.target].to_numpy("float64")
    if schema.task.classification:
        unknown = ~np.isin(actual, np.arange(len(model.labels)))
        what = "missing, or a label the model never learned"
    else:
        unknown = np.isnan(actual)
        what = "missing"
    if unknown.any():
        first = frame[schema.target].iloc[int(np.flatnonzero(unknown)[0])]
        raise UserError(
            f"{source}: target {schema.target} is {what}, in {int(unknown.sum()):,} of {len(actual):,} "
            f"rows (the first: {first!r}); the model cannot be scored on them"
        )
    return features, actual


def _numbers(raw: pd.Series, column: str, source: Path) -> np.ndarray:
    """A column's numbers; a missing cell is NaN, and so is the text of one ("nan"), as Python reads it."""
    values = pd.to_numeric(raw, errors="coerce").to_numpy("float64", na_value=np.nan)
    for i in np.flatnonzero(np.isnan(values) & raw.notna().to_numpy()):
        try:
            values[i] = float(raw.iloc[i])
        except (TypeError, ValueError):
            raise UserError(f"{source}: column {column} has a non-numeric value {raw.iloc[i]!r}") from None
    return values


def _pictures(
    model: model_artifact.Model, result: dict, actual: np.ndarray, predicted: np.ndarray, work: Path
) -> list[str]:
    """Draws the task's pictures into `work`; their file names, in the order the report shows them."""
    shown = []
    if model.task is Task.REGRESSION:
        pictures.predicted_vs_actual(actual, predicted, work / "predicted_vs_actual.png")
        pictures.residuals(actual, predicted, work / "residuals.png")
        shown += ["predicted_vs_actual.png", "residuals.png"]
    else:
        section = pictures.section(result)
        pictures.confusion(section["confusion_matrix"], work / "confusion_matrix.png")
        shown.append("confusion_matrix.png")
        if model.task is Task.BINARY:
            pictures.roc(section, work / "roc_curve.png")
            pictures.precision_recall(section, work / "precision_recall_curve.png")
            shown += ["roc_curve.png", "precision_recall_curve.png"]
    gains = model.booster.get_score(importance_type="total_gain")
    pictures.importance(
        {f: float(gains.get(f, 0.0)) for f in model.features}, work / "feature_importance.png"
    )
    shown.append("feature_importance.png")
    metric = model.metadata.get("hyperparameters", {}).get("eval_metric", "rmse")
    if pictures.training_curve(model.metadata.get("history", {}), metric, work / "training_curve.png"):
        shown.append("training_curve.png")
    return shown
