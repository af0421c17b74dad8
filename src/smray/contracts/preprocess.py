"""The preprocess mode's contract: its folders under the processing root and its arguments."""

from __future__ import annotations

from typing import Any

from smray.contracts import ingest
from smray.contracts.jobs import in_container, schema_argv

STORE = ingest.STORE  # the local store ingest wrote, or a downloaded SageMaker offline store
SPLITS = ("train", "validation", "test")
OUTPUT = "output"  # one folder per split below it
TRANSFORM = "transform"  # the fitted scaler (preprocessing.json)
REPORT = "report"
REPORT_FILE = "preprocess.json"


def split(name: str) -> str:
    return f"{OUTPUT}/{name}"


def argv(
    *, offline_files: bool = False, feature_group: Any = None, sizes: tuple[Any, Any, Any] | None = None
) -> list[Any]:
    """A job that reads STORE (the local store, or with `offline_files` the Parquet files of a SageMaker
    offline store) and the schema folder; `sizes` are the train, validation and test fractions."""
    store = ["--offline-files" if offline_files else "--store", in_container(STORE)]
    group = [] if feature_group is None else ["--feature-group", feature_group]
    fractions = []
    if sizes is not None:
        for name, size in zip(SPLITS, sizes, strict=True):
            fractions += [f"--{name}-size", size]
    return [*store, *schema_argv(), *group, *fractions]
