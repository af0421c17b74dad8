"""`train`: distributed XGBoost over the job's hosts, with optional tuning first (`training.tuning`).

Reads channels `train` and `validation` (Parquet, or CSV with a header) and, when present, `transform`
(preprocess's artifact, which names the target and the task and travels with the model). The task
decides the objective (reg:squarederror, binary:logistic, multi:softprob with a class per label), the
metrics logged and the validation metric that early stopping and tuning follow, in its direction
(`smray.contracts.train.METRICS`); string features are XGBoost's native categories. Hyper-parameters come
from `/opt/ml/input/config/hyperparameters.json` (see `smray.hyperparameters`). Prints SageMaker-readable
metric lines, checkpoints to `/opt/ml/checkpoints` (a restarted job resumes there), and writes into
`/opt/ml/model` only on success: `model.json` (XGBoost's JSON format, never pickle),
`preprocessing.json` and `metadata.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import xgboost

from smray import hyperparameters, paths, transform
from smray.contracts import train as contract
from smray.contracts.resource_config import ResourceConfig
from smray.entrypoints.training import checkpoint, engines, metrics, tuning
from smray.errors import UserError
from smray.model_artifact import METADATA_FILE, MODEL_FILE
from smray.reporting import numbers
from smray.schema import Feature, FeatureType, Schema, Task

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    root = paths.ml_root()
    p = argparse.ArgumentParser(prog="smray-entrypoint train", description=__doc__)
    p.add_argument("--channels", type=Path, default=root / "input" / "data")
    p.add_argument("--hyperparameters", type=Path, default=root / "input" / "config" / "hyperparameters.json")
    p.add_argument("--model-dir", type=Path, default=root / "model")
    p.add_argument("--checkpoint-dir", type=Path, default=root / "checkpoints")
    return p


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    artifact = _transform(opts.channels / contract.TRANSFORM)
    task = artifact.schema.task if artifact else Task.REGRESSION
    classes = len(artifact.labels) if artifact else 0
    values = hyperparameters.for_task(hyperparameters.load(opts.hyperparameters), task, classes)
    target = values["target"] or (artifact.schema.target if artifact else "")
    if not target:
        raise UserError(
            "no target: give the transform channel (preprocessing.json) or the hyper-parameter target"
        )
    checkpoints = checkpoint.job_folder(opts.checkpoint_dir)
    job = engines.Job(
        train_dir=opts.channels / contract.TRAIN,
        validation_dir=opts.channels / contract.VALIDATION,
        target=target,
        values=values,
        checkpoint_dir=checkpoints,
        artifact=artifact,
    )
    trials: list[tuning.Trial] = []
    if values["tune"]:
        tuned, trials = tuning.tune(job)
        job = engines.Job(**{**job.__dict__, "values": tuned})
        print(_trials_table(trials, values["eval_metric"]), flush=True)
    engine = values["engine"]
    if engine == "auto":
        engine = "xgboost" if len(config.hosts) == 1 else "collective"
    fingerprint_ = checkpoint.fingerprint(
        {**hyperparameters.xgboost_params(job.values), "target": target}, _inventory(job.train_dir)
    )
    resume = checkpoint.load(checkpoints, fingerprint_)
    if resume:
        log.info("resuming from a checkpoint after %d rounds", resume.rounds)
    if engine == "xgboost":
        result = engines.train_here(job, fingerprint_, resume)
    else:
        result = engines.train_on_cluster(job, fingerprint_, resume, len(config.hosts))
    _write_model(opts.model_dir, result, job, artifact, trials)
    # The model is cut at its best round; SageMaker's tuner ranks a trial by the LAST value its metric
    # regex finds in the log: end with the best round's metrics, the model's own.
    if result.history:
        print(metrics.line(result.best_iteration, result.history, result.best_iteration), flush=True)
    print(
        f"train: {result.engine}, {result.rounds} rounds, best iteration {result.best_iteration}, "
        f"validation-{values['eval_metric']} {numbers.significant(result.best_score, 4)}, "
        f"{result.seconds:.1f} s",
        flush=True,
    )


def _inventory(folder: Path) -> list[str]:
    """What a checkpoint was made from: the training files by name and size."""
    return sorted(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in folder.rglob("*") if p.is_file())


def _transform(folder: Path) -> transform.Transform | None:
    path = folder / transform.FILE_NAME
    return transform.load(path) if path.exists() else None


def _write_model(
    model_dir: Path,
    result: engines.Result,
    job: engines.Job,
    artifact: transform.Transform | None,
    trials: list[tuning.Trial],
) -> None:
    """Everything is written to a scratch folder first and moved in at the end: a failed job leaves no
    half-written model."""
    booster = xgboost.Booster(model_file=result.model)
    features = booster.feature_names or []
    if artifact is None:  # a user's own channels: the model still records its columns, unscaled
        schema = Schema(
            name="trained",
            target=job.target,
            features=tuple(Feature(f, FeatureType.FRACTIONAL) for f in features),
        )
        artifact = transform.Transform(schema, {})  # (a given one's features were checked on loading)
    metadata: dict[str, Any] = {
        "engine": result.engine,
        "task": artifact.schema.task.value,
        "objective": job.values["objective"],
        "labels": list(artifact.labels),
        "target": job.target,
        "features": features,
        "hyperparameters": job.values,
        "rounds": result.rounds,
        "best_iteration": result.best_iteration,
        f"validation_{job.values['eval_metric']}": result.best_score,
        "seconds": round(result.seconds, 3),
        "xgboost_version": xgboost.__version__,
        "history": result.history,
        "workers": result.workers,
        "tuning_trials": [t.__dict__ for t in trials],
    }
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".writing-") as scratch:
        work = Path(scratch)
        booster.save_model(work / MODEL_FILE)
        artifact.save(work)
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        for item in work.iterdir():
            item.replace(model_dir / item.name)


def _trials_table(trials: list[tuning.Trial], metric: str) -> str:
    names = list(trials[0].config) if trials else []
    head = f"{'rank':>4}  {metric:>12}  {'rounds':>6}  {'ended by':>14}  " + "  ".join(
        f"{n:>16}" for n in names
    )
    rows = [
        f"{i:>4}  {numbers.significant(t.score, 4):>12}  {t.rounds:>6}  {t.ended_by:>14}  "
        + "  ".join(f"{t.config[n]:>16.4g}" for n in names)
        for i, t in enumerate(trials, 1)
    ]
    return "\n".join(["tuning trials (best first):", head, *rows])
