"""Workflow graphs as pictures: boxes coloured by each step's outcome, arrows labelled where a branch
decides. Used for the SageMaker Pipeline's run report (and any other DAG of named steps)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

COLOURS = {  # fill, edge
    "Succeeded": ("#d7f0dd", "#2e7d32"),
    "Failed": ("#fbdcdc", "#c62828"),
    "Executing": ("#fff1cc", "#b7791f"),
    "NotRun": ("#eeeeee", "#9e9e9e"),
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


def pipeline_edges(definition: dict[str, Any]) -> list[Edge]:
    """Edges of a SageMaker Pipeline definition: data references (Steps.X...), DependsOn, and the
    if/else branches of Condition steps."""
    names = [s["Name"] for s in definition["Steps"]]
    edges: list[Edge] = []

    def visit(step: dict[str, Any]) -> None:
        text = json.dumps(step.get("Arguments", {}))
        for name in names:
            if re.search(rf'"Steps\.{re.escape(name)}\.', text) and name != step["Name"]:
                edges.append(Edge(name, step["Name"]))
        edges.extend(
            Edge(d, step["Name"]) for d in step.get("DependsOn", []) if Edge(d, step["Name"]) not in edges
        )
        if step.get("Type") == "Condition":
            args = step["Arguments"]
            for branch, label in (("IfSteps", "if"), ("ElseSteps", "else")):
                for inner in args.get(branch, []):
                    edges.append(Edge(step["Name"], inner["Name"], label))
                    names.append(inner["Name"])
                    visit(inner)

    for step in definition["Steps"]:
        visit(step)
    return edges


def state_machine_edges(definition: dict[str, Any]) -> list[Edge]:
    """Edges of an Amazon States Language definition: Next, Choice rules and Default, and Catch
    (labelled with the errors caught)."""
    edges: list[Edge] = []
    for name, state in definition["States"].items():
        if "Next" in state:
            edges.append(Edge(name, state["Next"]))
        for rule in state.get("Choices", []):
            edges.append(Edge(name, rule["Next"], "yes"))
        if "Default" in state:
            edges.append(Edge(name, state["Default"], "no"))
        for catch in state.get("Catch", []):
            edges.append(Edge(name, catch["Next"], "catch"))
    return edges


def reduce(edges: list[Edge]) -> list[Edge]:
    """Drops an unlabelled edge a->c when c is reachable from a by other edges: the picture shows the
    order of the steps, not every data reference (the pipeline's data references skip steps)."""

    def reachable(start: str, goal: str, skip: Edge) -> bool:
        seen, todo = set(), [start]
        while todo:
            here = todo.pop()
            for e in edges:
                if e.source == here and e != skip and e.target not in seen:
                    if e.target == goal:
                        return True
                    seen.add(e.target)
                    todo.append(e.target)
        return False

    return [e for e in edges if e.label or not reachable(e.source, e.target, e)]


def draw(nodes: dict[str, tuple[str, str]], edges: list[Edge], path: Path, title: str) -> Path:
    """`nodes`: name -> (status, caption). Laid out left to right by longest path from a source."""
    edges = reduce(edges)
    layer = {n: 0 for n in nodes}
    for _ in nodes:  # longest-path layering; a DAG settles within len(nodes) passes
        for e in edges:
            if e.source in layer and e.target in layer:
                layer[e.target] = max(layer[e.target], layer[e.source] + 1)
    columns: dict[int, list[str]] = {}
    for name in nodes:
        columns.setdefault(layer[name], []).append(name)
    width, height = 2.6, 1.1
    pos = {
        name: (col * 3.3, (len(members) - 1) / 2 * 1.8 - i * 1.8)
        for col, members in columns.items()
        for i, name in enumerate(members)
    }
    fig, ax = plt.subplots(figsize=(3.3 * len(columns) + 0.5, 1.8 * max(map(len, columns.values())) + 1.4))
    for name, (x, y) in pos.items():
        status, caption = nodes[name]
        fill, edge = COLOURS.get(status, COLOURS["NotRun"])
        box = FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.05,rounding_size=0.15",
            facecolor=fill,
            edgecolor=edge,
            linewidth=2,
        )
        ax.add_patch(box)
        ax.text(
            x,
            y + 0.15,
            name,
            ha="center",
            va="center",
            fontsize=9 if len(name) <= 24 else 6.5,
            fontweight="bold",
        )
        ax.text(x, y - 0.25, caption or status, ha="center", va="center", fontsize=8, color="#333333")
    for e in edges:
        if e.source not in pos or e.target not in pos:
            continue
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        ax.annotate(
            "",
            xy=(x1 - width / 2 - 0.05, y1),
            xytext=(x0 + width / 2 + 0.05, y0),
            arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.4},
        )
        if e.label:  # half way along the arrow, above it: where branches are told apart
            start, end = x0 + width / 2, x1 - width / 2
            ax.text(
                (start + end) / 2,
                (y0 + y1) / 2 + 0.15,
                e.label,
                fontsize=9,
                color="#333333",
                style="italic",
                ha="center",
            )
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - width, max(xs) + width)
    ax.set_ylim(min(ys) - height * 1.2, max(ys) + height * 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
