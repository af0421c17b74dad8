"""`evaluate`: model + test split -> `evaluation.json` (the shape SageMaker model-quality conditions and
model metrics read) and a report: predicted-vs-actual, residuals, feature importance and the training
curve as PNG, and `report.html` showing them.

Runs on the head only: the test split is small next to training, and the model is one booster."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from smray import metrics, model_artifact, tables
from smray.contracts import evaluate as contract
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig
from smray.reporting import evaluation as pictures

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
        help="the test data holds raw features: apply the model's preprocessing first "
        "(default: already scaled, as preprocess writes it)",
    )
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    model = model_artifact.load(opts.model)
    target = model.transform.schema.target
    frame = pd.concat([tables.read(f) for f in tables.list_files(opts.test, what="test")], ignore_index=True)
    tables.require_columns(frame, [target, *model.features], opts.test)
    values = tables.numeric(frame, model.transform.schema, opts.test, scaled=not opts.raw)
    actual = values[target].to_numpy()
    predicted = model.predict(values, scaled=not opts.raw)
    result = metrics.regression(actual, predicted)

    opts.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=opts.output, prefix=".writing-") as scratch:
        work = Path(scratch)
        pictures.predicted_vs_actual(actual, predicted, work / "predicted_vs_actual.png")
        pictures.residuals(actual, predicted, work / "residuals.png")
        gains = model.booster.get_score(importance_type="total_gain")
        pictures.importance(
            {f: float(gains.get(f, 0.0)) for f in model.features}, work / "feature_importance.png"
        )
        shown = ["predicted_vs_actual.png", "residuals.png", "feature_importance.png"]
        metric = model.metadata.get("hyperparameters", {}).get("eval_metric", "rmse")
        if pictures.training_curve(model.metadata.get("history", {}), metric, work / "training_curve.png"):
            shown.append("training_curve.png")
        facts = {
            "test rows": f"{len(actual):,}",
            "target": target,
            "engine": str(model.metadata.get("engine", "?")),
            "best iteration": str(model.metadata.get("best_iteration", "?")),
        }
        (work / "report.html").write_text(pictures.page("Model evaluation", result, shown, facts))
        (work / EVALUATION_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        for item in work.iterdir():  # evaluation.json last: its presence means the report is complete
            if item.name != EVALUATION_FILE:
                shutil.move(item, opts.output / item.name)
        shutil.move(work / EVALUATION_FILE, opts.output / EVALUATION_FILE)
    m = result["regression_metrics"]
    print(
        f"evaluate: {len(actual)} test rows: rmse {m['rmse']['value']:,.1f} "
        f"(± {m['rmse']['standard_deviation']:,.1f}), "
        f"mae {m['mae']['value']:,.1f}, r2 {m['r2']['value']:.4f}, mape {m['mape']['value']:.4f}; "
        f"report {opts.output / 'report.html'}",
        flush=True,
    )
