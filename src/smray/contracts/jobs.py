"""Where a job's files are. Inside the image a Processing job's inputs and outputs live under
/opt/ml/processing; each mode's contract names its folders relative to that root, so that the mode's
own defaults (`processing_root()`, which tests move) and the workflows that mount those folders
(`in_container()`, always the real path) spell each one once."""

from __future__ import annotations

from pathlib import Path

from smray import paths

PROCESSING = "/opt/ml/processing"
SCHEMA_FILE = "schema.json"  # the one file of a schema folder (the pipeline's SchemaUrl, a job's input)


def in_container(relative: str) -> str:
    """The folder as a Processing job sees it: what a workflow passes and mounts."""
    return f"{PROCESSING}/{relative}"


def processing_root() -> Path:
    """The same root for the mode's defaults (SMRAY_OPT_ML moves it in tests)."""
    return paths.ml_root() / "processing"


SCHEMA = "input/schema"  # the schema folder, where ingest and preprocess jobs mount it


def schema_argv() -> list[str]:
    return ["--schema", in_container(f"{SCHEMA}/{SCHEMA_FILE}")]
