"""The evaluation report: predicted-vs-actual and residual plots, feature importance and the training
curve as PNG, and one HTML page that shows them with the metrics."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

MAX_POINTS = 5_000  # a scatter of more points shows nothing more and makes a heavy PNG


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


def page(title: str, metrics: dict | None, pictures: list[str], facts: dict[str, str]) -> str:
    """One HTML page: the metrics (when there are any), a table of facts, the pictures."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['value']:,.4g}</td>"
        f"<td>± {m['standard_deviation']:,.3g}</td></tr>"
        for name, m in (metrics or {}).get("regression_metrics", {}).items()
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
