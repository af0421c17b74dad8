"""The ingest mode's contract: its folders under the processing root and its arguments."""

from __future__ import annotations

from typing import Any

from smray.contracts.jobs import in_container, schema_argv

RAW = "input/raw"  # the CSV/Parquet files
STORE = "store"  # the local feature store's folder (preprocess reads the same one)
QUARANTINE = "quarantine"
REPORT = "report"
REPORT_FILE = "ingest.json"


def argv(*, feature_group: Any = None, sagemaker_role: Any = None, offline_s3_uri: Any = None) -> list[Any]:
    """A job that reads RAW and the schema folder, and writes the local store at STORE or, given a role,
    SageMaker Feature Store (a new group's offline store at `offline_s3_uri`). Values may be pipeline
    variables or JSONPath strings."""
    if sagemaker_role is not None:
        store = ["--backend", "sagemaker", "--role-arn", sagemaker_role, "--offline-s3-uri", offline_s3_uri]
    else:
        store = ["--store", in_container(STORE)]
    group = [] if feature_group is None else ["--feature-group", feature_group]
    return [*store, *schema_argv(), *group]
