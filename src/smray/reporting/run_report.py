"""The report of one pipeline run: the pipeline's graph with each step coloured by its outcome, the
evaluation's metrics and plots, the gate's decision, the registered model and the endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smray.reporting import evaluation, graph

REPORT = "report.html"
GRAPH = "pipeline.png"


def write(
    folder: Path,
    definition: dict[str, Any],
    steps: dict[str, tuple[str, float]],
    facts: dict[str, str],
    metrics: dict[str, Any] | None,
    title: str,
) -> Path:
    """`steps`: name -> (status, seconds) for the steps that ran; the others are drawn as not run."""
    edges = graph.pipeline_edges(definition)
    names = list(dict.fromkeys([s["Name"] for s in definition["Steps"]] + [e.target for e in edges]))
    nodes = {
        name: (steps[name][0], f"{steps[name][0]}, {steps[name][1]:.0f} s")
        if name in steps
        else ("NotRun", "not run")
        for name in names
    }
    graph.draw(nodes, edges, folder / GRAPH, title=title)
    pictures = [GRAPH] + [f"evaluation/{p.name}" for p in sorted((folder / "evaluation").glob("*.png"))]
    step_facts = {f"step {name}": f"{status}, {seconds:.0f} s" for name, (status, seconds) in steps.items()}
    path = folder / REPORT
    path.write_text(evaluation.page(title, metrics, pictures, {**facts, **step_facts}))
    return path
