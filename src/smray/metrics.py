"""Regression metrics with a bootstrap standard deviation each, in the shape SageMaker model-quality
conditions and model metrics read: {"regression_metrics": {"rmse": {"value": v, "standard_deviation": s}}}."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 200


def point(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric of one sample."""
    err = p - y
    nonzero = y != 0
    ss_res = np.sum(err**2, axis=-1)
    ss_tot = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mape = np.sum(np.where(nonzero, np.abs(err) / np.abs(np.where(nonzero, y, 1)), 0), axis=-1) / np.sum(
            nonzero, axis=-1
        )
        r2 = 1 - ss_res / ss_tot
    return {
        "rmse": np.sqrt(np.mean(err**2, axis=-1)),
        "mae": np.mean(np.abs(err), axis=-1),
        "r2": r2,
        "mape": mape,
    }


def regression(actual: np.ndarray, predicted: np.ndarray, seed: int = 0) -> dict:
    actual = np.asarray(actual, dtype="float64")
    predicted = np.asarray(predicted, dtype="float64")
    values = point(actual, predicted)
    rng = np.random.default_rng(seed)
    n = len(actual)
    draws = []
    for _ in range(BOOTSTRAP_SAMPLES):
        i = rng.integers(0, n, n)
        draws.append(point(actual[i], predicted[i]))
    boot = {name: np.array([d[name] for d in draws]) for name in values}
    with np.errstate(invalid="ignore"):  # r2 of a constant resample is -inf: no spread to report
        spread = {name: float(np.nanstd(np.where(np.isfinite(v), v, np.nan))) for name, v in boot.items()}
    return {
        "regression_metrics": {
            name: {"value": float(values[name]), "standard_deviation": spread[name]} for name in values
        },
        "rows": len(actual),
    }
