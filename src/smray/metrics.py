"""A model's metrics on a test split, each with a bootstrap standard deviation, in the shapes of SageMaker's
model quality reports, which its model-quality conditions and model metrics read:

    {"regression_metrics": {"rmse": {"value": v, "standard_deviation": s}, ...}, "rows": n}
    {"binary_classification_metrics": {"accuracy": {...}, ..., "confusion_matrix": {...},
     "receiver_operating_characteristic_curve": {...}, "precision_recall_curve": {...}}, "rows": n}
    {"multiclass_classification_metrics": {"accuracy": {...}, ..., "confusion_matrix": {...}}, "rows": n}

A confusion matrix is keyed by the labels' text: {actual: {predicted: rows}}. A binary model predicts the
positive label where its probability is above 0.5 (as XGBoost's `error` counts), a multiclass model the
most probable label. A metric the data leaves undefined (an AUC where the test rows hold one label only)
is null; precision, recall and F1 are 0 where nothing was predicted or present to divide by.

Each metric is written once, over rows weighted by how often a resample draws them: the value is the
metric at weight 1 per row, and the 200 bootstrap resamples are 200 weight vectors (the rows' counts in
each), evaluated together as matrix products, block by block: 100k rows take about a CPU second."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from smray.gate import SECTIONS
from smray.schema import Task

BOOTSTRAP_SAMPLES = 200
BLOCK = 25  # resamples evaluated together: a (BLOCK, rows) matrix of counts at a time
CURVE_POINTS = 200  # at most this many points of a ROC or precision-recall curve
THRESHOLD = 0.5  # a binary model predicts the positive label above this probability
EPSILON = 1e-15  # probabilities are clipped to [EPSILON, 1 - EPSILON] for the log loss

Metrics = dict[str, np.ndarray]  # metric name -> one value per weight vector


def positive(probability: np.ndarray) -> np.ndarray:
    """Whether a binary model predicts the positive label (its probability is P(positive))."""
    return np.asarray(probability) > THRESHOLD


def _regression(y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], Metrics]:
    err = p - y
    centred = y - y.mean()  # sums of squares of centred values lose no precision to a large mean
    nonzero = (y != 0).astype("float64")
    relative = np.abs(err) / np.where(y != 0, np.abs(y), 1.0) * nonzero

    def of(w: np.ndarray) -> Metrics:
        n = w.sum(axis=1)
        sq, s1 = w @ err**2, w @ centred
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "rmse": np.sqrt(sq / n),
                "mae": w @ np.abs(err) / n,
                "r2": 1 - sq / (w @ centred**2 - s1**2 / n),
                "mape": w @ relative / (w @ nonzero),
            }

    return of


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (a precision where nothing was predicted positive)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype="float64"), where=den != 0)


def _binary(y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], Metrics]:
    predicted = positive(p).astype("float64")
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    loss = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    order = np.argsort(p, kind="stable")  # rows by score, for the AUC's ranks
    y_ranked = y[order]
    groups = np.flatnonzero(np.r_[True, np.diff(p[order]) != 0])  # the first row of each score (ties: one)

    def of(w: np.ndarray) -> Metrics:
        n = w.sum(axis=1)
        tp, fp = w @ (y * predicted), w @ ((1 - y) * predicted)
        fn = w @ (y * (1 - predicted))
        ranked = w[:, order]
        pos, neg = ranked * y_ranked, ranked
        if len(groups) < len(y):  # ties: a group's rows count as one
            pos, neg = np.add.reduceat(pos, groups, axis=1), np.add.reduceat(neg, groups, axis=1)
        neg = neg - pos
        below = np.cumsum(neg, axis=1) - neg  # negatives scored lower than each group
        with np.errstate(divide="ignore", invalid="ignore"):  # one label only: no AUC
            auc = np.sum(pos * (below + 0.5 * neg), axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
        return {
            "accuracy": (n - fp - fn) / n,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auc": auc,
            "logloss": w @ loss / n,
        }

    return of


def _multiclass(y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], Metrics]:
    k = p.shape[1]
    predicted = p.argmax(axis=1)
    loss = -np.log(np.clip(p[np.arange(len(y)), y], EPSILON, 1.0))
    cell = y * k + predicted  # the row's cell of the confusion matrix

    def of(w: np.ndarray) -> Metrics:
        n = w.sum(axis=1)
        confusion = _confusion(w, cell, k)  # (samples, actual, predicted)
        hits = np.diagonal(confusion, axis1=1, axis2=2)
        actual, said = confusion.sum(axis=2), confusion.sum(axis=1)
        support = actual / n[:, None]
        return {
            "accuracy": hits.sum(axis=1) / n,
            "weighted_precision": np.sum(support * _ratio(hits, said), axis=1),
            "weighted_recall": np.sum(support * _ratio(hits, actual), axis=1),
            "weighted_f1": np.sum(support * _ratio(2 * hits, actual + said), axis=1),
            "logloss": w @ loss / n,
        }

    return of


def _confusion(w: np.ndarray, cell: np.ndarray, k: int) -> np.ndarray:
    """Weighted confusion matrices, one per weight vector: rows actual, columns predicted."""
    samples = len(w)
    flat = (np.arange(samples)[:, None] * k * k + cell[None, :]).ravel()
    return np.bincount(flat, weights=w.ravel(), minlength=samples * k * k).reshape(samples, k, k)


def _resamples(n: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples as counts: how often each of the n rows is drawn, BLOCK at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, BOOTSTRAP_SAMPLES, BLOCK):
        drawn = rng.integers(0, n, (min(BLOCK, BOOTSTRAP_SAMPLES - start), n), dtype=np.int32)
        counts = np.empty(drawn.shape)
        for i, rows in enumerate(drawn):  # a row at a time: its counts stay in the cache
            counts[i] = np.bincount(rows, minlength=n)
        yield counts


def _with_deviations(of: Callable[[np.ndarray], Metrics], n: int, seed: int) -> dict[str, dict]:
    """Each metric's value and its standard deviation over the resamples (those where it is defined)."""
    values = of(np.ones((1, n)))
    blocks = [of(w) for w in _resamples(n, seed)]
    out = {}
    for name, value in values.items():
        boot = np.concatenate([b[name] for b in blocks])
        finite = boot[np.isfinite(boot)]
        out[name] = {
            "value": _plain(value[0]),
            "standard_deviation": float(np.std(finite)) if len(finite) else None,
        }
    return out


def _plain(value: float) -> float | None:
    """A metric for JSON: null where the data leaves it undefined (JSON has no NaN)."""
    return float(value) if np.isfinite(value) else None


def evaluate(
    task: Task, actual: np.ndarray, predicted: np.ndarray, labels: Sequence[str] = (), seed: int = 0
) -> dict[str, Any]:
    """A task's evaluation. `actual` as Transform.encode_target gives it (a number, or a label's position:
    1 is a binary task's positive label); `predicted` as Model.predict gives it (a number, P(positive),
    or a (rows, labels) matrix of probabilities in `labels`' order)."""
    section = _with_deviations(_metrics_of(task, actual, predicted), len(actual), seed)
    if task.classification:
        if task is Task.BINARY:
            chosen = positive(predicted).astype("int64")
        else:
            chosen = np.asarray(predicted).argmax(axis=1)
        cell = np.asarray(actual).astype("int64") * len(labels) + chosen
        section["confusion_matrix"] = _confusion_dict(cell, labels)
    if task is Task.BINARY:
        section.update(_curves(np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")))
    return {SECTIONS[task]: section, "rows": len(actual)}


def regression(actual: np.ndarray, predicted: np.ndarray, seed: int = 0) -> dict[str, Any]:
    return evaluate(Task.REGRESSION, actual, predicted, seed=seed)


def point_metric(task: Task, metric: str, actual: np.ndarray, predicted: np.ndarray) -> float:
    """One metric's value, without its deviation (a champion and a challenger compared on the gate's
    metric); NaN where the data leaves it undefined. Arguments as `evaluate` takes them."""
    return float(_metrics_of(task, actual, predicted)(np.ones((1, len(actual))))[metric][0])


def point(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Each regression metric of one sample."""
    return {m: point_metric(Task.REGRESSION, m, y, p) for m in ("rmse", "mae", "r2", "mape")}


def _metrics_of(task: Task, actual: np.ndarray, predicted: np.ndarray) -> Callable[[np.ndarray], Metrics]:
    p = np.asarray(predicted, dtype="float64")
    if task is Task.MULTICLASS:
        return _multiclass(np.asarray(actual).astype("int64"), p)
    y = np.asarray(actual, dtype="float64")
    return _binary(y, p) if task is Task.BINARY else _regression(y, p)


def _confusion_dict(cell: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, int]]:
    k = len(labels)
    counts = np.bincount(cell, minlength=k * k).reshape(k, k)
    return {a: {p: int(counts[i, j]) for j, p in enumerate(labels)} for i, a in enumerate(labels)}


def _curves(y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """ROC and precision-recall, a point per distinct score from the highest down (thinned to
    CURVE_POINTS, the first and last kept), from (0, 0) to (1, 1) for ROC."""
    order = np.argsort(-p, kind="stable")
    last = np.r_[np.flatnonzero(np.diff(p[order]) != 0), len(p) - 1]  # the last row of each score
    tp = np.cumsum(y[order])[last]
    fp = last + 1 - tp
    positives, negatives = tp[-1], fp[-1]
    keep = np.unique(np.linspace(0, len(last) - 1, min(len(last), CURVE_POINTS - 1)).round().astype(int))
    tp, fp = tp[keep], fp[keep]
    recall = _ratio(tp, np.full_like(tp, positives))
    return {
        "receiver_operating_characteristic_curve": {
            "false_positive_rates": [0.0, *_ratio(fp, np.full_like(fp, negatives)).tolist()],
            "true_positive_rates": [0.0, *recall.tolist()],
        },
        "precision_recall_curve": {"precisions": (tp / (tp + fp)).tolist(), "recalls": recall.tolist()},
    }
