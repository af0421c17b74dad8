"""The evaluation report: predicted-vs-actual and residual plots (regression), the confusion matrix
(classification), ROC and precision-recall curves (binary), feature importance and the training curve as
PNG, and one HTML page that shows them with the metrics, each number with the digits its magnitude needs
(`smray.reporting.numbers`)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from smray.gate import SECTIONS
from smray.reporting import numbers
from smray.schema import Task

MAX_POINTS = 5_000  # a scatter of more points shows nothing more and makes a heavy PNG
MAX_ANNOTATED = 20  # labels up to which each cell of a confusion matrix shows its count
# The metrics a one-line summary shows, by task: the first with its bootstrap deviation.
HEADLINE = {
    Task.REGRESSION: ("rmse", "mae", "r2", "mape"),
    Task.BINARY: ("accuracy", "auc", "f1", "logloss"),
    Task.MULTICLASS: ("accuracy", "weighted_f1", "logloss"),
}


def _compact(*axes: matplotlib.axis.Axis) -> None:
    """Tick labels like 250k instead of 250000, so they do not run into each other."""
    formatter = FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k" if abs(v) >= 10_000 else f"{v:,.4g}")
    for axis in axes:
        axis.set_major_formatter(formatter)


def _sample(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(n, size=min(n, MAX_POINTS), replace=False)


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    i = _sample(len(actual))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(actual[i], predicted[i], s=4, alpha=0.4)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
    _compact(ax.xaxis, ax.yaxis)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def residuals(actual: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    err = predicted - actual
    i = _sample(len(actual))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.scatter(predicted[i], err[i], s=4, alpha=0.4)
    left.axhline(0, color="black", linewidth=1)
    left.set(xlabel="predicted", ylabel="residual (predicted - actual)", title="Residuals")
    right.hist(err, bins=60)
    right.set(xlabel="residual", ylabel="rows", title="Residual distribution")
    _compact(left.xaxis, left.yaxis, right.xaxis)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def importance(gains: dict[str, float], path: Path) -> None:
    names = sorted(gains, key=gains.get)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    total = sum(gains.values()) or 1.0
    ax.barh(names, [gains[n] / total for n in names])
    ax.set(xlabel="total gain (share)", title="Feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curve(history: dict[str, dict[str, list[float]]], metric: str, path: Path) -> bool:
    curves = {name: values[metric] for name, values in history.items() if metric in values}
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        ax.plot(values, label=name)
    ax.set(xlabel="boosting round", ylabel=metric, title="Training curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def task_of(evaluation: dict) -> Task:
    """The task an evaluation (evaluation.json) is of, from its section."""
    for task, name in SECTIONS.items():
        if name in evaluation:
            return task
    raise ValueError(f"not an evaluation: no section of {', '.join(SECTIONS.values())}")


def section(evaluation: dict) -> dict:
    """An evaluation's section of metrics (regression_metrics, binary_classification_metrics, ...)."""
    return evaluation[SECTIONS[task_of(evaluation)]]


def headline(evaluation: dict) -> str:
    """The task's main metrics on one line, the first with its deviation: "rmse 10,939 (± 212), mae ..."."""
    metrics = section(evaluation)
    first, *rest = HEADLINE[task_of(evaluation)]
    value, deviation = numbers.with_deviation(metrics[first]["value"], metrics[first]["standard_deviation"])
    others = [f"{name} {numbers.significant(metrics[name]['value'])}" for name in rest]
    return ", ".join([f"{first} {value} (± {deviation})", *others])


def confusion(matrix: dict[str, dict[str, int]], path: Path) -> None:
    """Rows: the actual label; columns: the predicted one; each cell's share of its row as its shade."""
    labels = list(matrix)
    counts = np.array([[matrix[a][p] for p in labels] for a in labels], dtype="float64")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(4.5, 1.5 + 0.6 * len(labels)), 14)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= MAX_ANNOTATED:
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(count):,}", ha="center", va="center", color=colour, fontsize=8)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test)")
    fig.colorbar(image, ax=ax, label="share of the actual label's rows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc(metrics: dict, path: Path) -> None:
    """A binary section's ROC curve, with its AUC."""
    curve = metrics["receiver_operating_characteristic_curve"]
    auc = numbers.significant(metrics["auc"]["value"])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(curve["false_positive_rates"], curve["true_positive_rates"], label=f"model (AUC {auc})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def precision_recall(metrics: dict, path: Path) -> None:
    """A binary section's precision-recall curve, with the share of positives (a guess's precision)."""
    curve = metrics["precision_recall_curve"]
    matrix = metrics["confusion_matrix"]
    positive = list(matrix)[-1]
    rows = sum(sum(row.values()) for row in matrix.values())
    base = sum(matrix[positive].values()) / max(rows, 1)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(curve["recalls"], curve["precisions"], label="model")
    ax.axhline(base, color="grey", linewidth=1, linestyle="--", label=f"share of {positive}")
    ax.set(xlabel=f"recall ({positive})", ylabel=f"precision ({positive})", title="Precision-recall (test)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def page(title: str, metrics: dict | None, pictures: list[str], facts: dict[str, str]) -> str:
    """One HTML page: the metrics (when there are any), a table of facts, the pictures."""
    known = metrics is not None and any(name in metrics for name in SECTIONS.values())
    shown = section(metrics) if known else {}
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value}</td><td>± {deviation}</td></tr>"
        for name, m in shown.items()
        if isinstance(m, dict) and "value" in m
        for value, deviation in [numbers.with_deviation(m["value"], m["standard_deviation"])]
    )
    metric_table = (
        f"<table><tr><th>metric</th><th>value</th><th>bootstrap sd</th></tr>{rows}</table>" if rows else ""
    )
    fact_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
    )
    images = "".join(
        f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"></figure>' for p in pictures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }}
td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{metric_table}
<table>{fact_rows}</table>
{images}
</body></html>
"""
