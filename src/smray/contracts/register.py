"""The register mode's contract (local pipelines: SageMaker's RegisterModel cannot run in local mode):
its folders under the processing root and its arguments."""

from __future__ import annotations

from typing import Any

from smray.contracts import evaluate

MODEL = evaluate.MODEL
EVALUATION = "evaluation"  # the evaluate job's output folder
REGISTRY = "registry"  # the local registry, mounted
OUTPUT = "registered"
RESULT_FILE = "registered.json"  # the new version's record


def argv(*, group: Any, image: Any, execution: Any, gate_metric: str) -> list[Any]:
    """`gate_metric`: the metric of the gate the model passed (`accuracy`), recorded with the version."""
    return ["--group", group, "--image", image, "--execution", execution, "--gate-metric", gate_metric]
