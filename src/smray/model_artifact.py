"""A trained model as `train` writes it: `model.json` (XGBoost), `preprocessing.json` (schema + scaler)
and `metadata.json`, in a folder or in SageMaker's `model.tar.gz`. Loaded the same way by evaluate and by
the endpoint."""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost

from smray import transform
from smray.errors import UserError
from smray.schema import Task

MODEL_FILE = "model.json"
METADATA_FILE = "metadata.json"
ARCHIVE = "model.tar.gz"
MAX_UNPACKED_BYTES = 4 * 1024**3  # a model of smray's is megabytes; this stops an archive bomb


@dataclass
class Model:
    booster: xgboost.Booster
    transform: transform.Transform
    metadata: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return self.transform.schema.feature_names

    @property
    def task(self) -> Task:
        return self.transform.schema.task

    @property
    def labels(self) -> tuple[str, ...]:
        """A classification's labels: a multiclass probability's column, a binary task's positive last."""
        return self.transform.labels

    def predict(self, features: pd.DataFrame, scaled: bool) -> np.ndarray:
        """For rows holding the model's features, raw or already encoded by preprocess (`scaled`): the
        predicted number (regression), the positive label's probability (binary), or each label's
        probability, a row per row (multiclass)."""
        values = features[self.features].to_numpy("float64") if scaled else self.transform.encode(features)
        return self.booster.inplace_predict(values)


def load(location: Path) -> Model:
    """From a folder holding the files, or holding (or being) a model.tar.gz."""
    archive = location if location.is_file() else location / ARCHIVE
    if archive.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            extract(archive, Path(tmp))
            return _load_dir(Path(tmp))
    return _load_dir(location)


def extract(archive: Path, into: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Unpacks a model archive, refusing absolute paths, '..', links, devices and more than `max_bytes`
    unpacked, before anything is written. What it writes is the extracting user's alone: owned by them
    (root applies an archive's owners otherwise) with the owner's bits only (no setuid or sticky bit).
    (tarfile's "data" filter does much the same, but the image's Python, Debian's 3.11.2, predates it.)"""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
                    raise UserError(f"model archive {archive} holds an unsafe entry: {m.name}")
                m.mode &= 0o700
                m.uid, m.gid, m.uname, m.gname = os.geteuid(), os.getegid(), "", ""
            unpacked = sum(m.size for m in members)
            if unpacked > max_bytes:
                raise UserError(
                    f"model archive {archive} unpacks to {unpacked:,} bytes, over the limit of {max_bytes:,}"
                )
            tar.extractall(into, members=members)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"cannot unpack model archive {archive}: {exc}") from exc


def _load_dir(folder: Path) -> Model:
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise UserError(f"no {MODEL_FILE} in {folder}: expected the output of the train step")
    try:
        booster = xgboost.Booster(model_file=str(model_path))
    except xgboost.core.XGBoostError as exc:
        raise UserError(f"{model_path} is not a valid XGBoost model: {str(exc).splitlines()[0]}") from exc
    prep = transform.load(folder / transform.FILE_NAME)
    meta_path = folder / METADATA_FILE
    try:
        metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{meta_path} is not valid JSON: {exc}") from exc
    if booster.feature_names and list(booster.feature_names) != prep.schema.feature_names:
        raise UserError(
            f"{model_path} was trained on {booster.feature_names}, but its preprocessing names "
            f"{prep.schema.feature_names}"
        )
    _check_classes(booster, prep, model_path)
    return Model(booster=booster, transform=prep, metadata=metadata)


def _check_classes(booster: xgboost.Booster, prep: transform.Transform, model_path: Path) -> None:
    """A classifier's outputs must match its labels: refused at load, not with a 500 per request."""
    task = prep.schema.task
    if not task.classification:
        return
    classes = int(json.loads(booster.save_config())["learner"]["learner_model_param"]["num_class"])
    expected = 0 if task is Task.BINARY else len(prep.labels)  # XGBoost's num_class of a binary model is 0
    if (task is Task.BINARY and len(prep.labels) != 2) or classes != expected:
        raise UserError(
            f"{model_path} gives {classes or 1} output(s) per row, but its preprocessing names the "
            f"{task.value} labels {list(prep.labels)}"
        )
