"""smray.metrics against small cases computed by hand, and the bootstrap's resampling."""

import json
import math

import numpy as np
import pytest

from smray import metrics
from smray.schema import Task

# 7 rows, "yes" the positive label: scores above 0.5 predict yes. Positives score 0.9, 0.4, 0.3; negatives
# 0.6, 0.2, 0.1 and 0.4 (a tie with a positive).
Y = np.array([1, 1, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.4, 0.3, 0.6, 0.2, 0.1, 0.4])


def test_binary_metrics_match_their_definitions():
    m = metrics.evaluate(Task.BINARY, Y, P, ["no", "yes"])["binary_classification_metrics"]
    # predicted yes: 0.9 (a positive), 0.6 (a negative): tp 1, fp 1, fn 2, tn 3
    assert m["accuracy"]["value"] == pytest.approx(4 / 7)
    assert m["precision"]["value"] == pytest.approx(1 / 2)
    assert m["recall"]["value"] == pytest.approx(1 / 3)
    assert m["f1"]["value"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    # pairs (positive, negative) ranked right: 0.9 over all 4, 0.4 over 0.2 and 0.1 and half the tie, 0.3
    # over 0.2 and 0.1
    assert m["auc"]["value"] == pytest.approx((4 + 2.5 + 2) / 12)
    likelihood = [0.9, 0.4, 0.3, 0.4, 0.8, 0.9, 0.6]  # of each row's own label
    assert m["logloss"]["value"] == pytest.approx(-np.mean(np.log(likelihood)))
    assert m["confusion_matrix"] == {"no": {"no": 3, "yes": 1}, "yes": {"no": 2, "yes": 1}}


def test_binary_curves_step_through_the_distinct_scores_from_the_highest():
    m = metrics.evaluate(Task.BINARY, Y, P, ["no", "yes"])["binary_classification_metrics"]
    roc = m["receiver_operating_characteristic_curve"]
    # scores 0.9 (+), 0.6 (-), 0.4 (+ and -), 0.3 (+), 0.2 (-), 0.1 (-)
    assert roc["true_positive_rates"] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert roc["false_positive_rates"] == pytest.approx([0, 0, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    pr = m["precision_recall_curve"]
    assert pr["precisions"] == pytest.approx([1, 1 / 2, 2 / 4, 3 / 5, 3 / 6, 3 / 7])
    assert pr["recalls"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1, 1, 1])


def test_curves_are_thinned_to_at_most_200_points_from_end_to_end():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20_000)
    p = rng.uniform(size=20_000)
    m = metrics.evaluate(Task.BINARY, y, p, ["a", "b"])["binary_classification_metrics"]
    roc, pr = m["receiver_operating_characteristic_curve"], m["precision_recall_curve"]
    assert (
        len(roc["true_positive_rates"]) <= metrics.CURVE_POINTS and len(pr["recalls"]) <= metrics.CURVE_POINTS
    )
    assert (roc["false_positive_rates"][0], roc["true_positive_rates"][0]) == (0, 0)
    assert (roc["false_positive_rates"][-1], roc["true_positive_rates"][-1]) == (1, 1)
    assert np.all(np.diff(roc["false_positive_rates"]) >= 0) and pr["recalls"][-1] == 1


# 7 rows of 3 labels; the most probable label of each row: a, b, b, b, c, a, b
YM = np.array([0, 0, 1, 1, 2, 2, 2])
PM = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.1, 0.8],
        [0.5, 0.1, 0.4],
        [0.2, 0.6, 0.2],
    ]
)


def test_multiclass_metrics_match_their_definitions():
    m = metrics.evaluate(Task.MULTICLASS, YM, PM, ["a", "b", "c"])["multiclass_classification_metrics"]
    assert m["confusion_matrix"] == {
        "a": {"a": 1, "b": 1, "c": 0},
        "b": {"a": 0, "b": 2, "c": 0},
        "c": {"a": 1, "b": 1, "c": 1},
    }
    assert m["accuracy"]["value"] == pytest.approx(4 / 7)
    # per label (a, b, c): precision 1/2, 2/4, 1; recall 1/2, 1, 1/3; f1 1/2, 2/3, 1/2; support 2, 2, 3
    assert m["weighted_precision"]["value"] == pytest.approx((2 * 1 / 2 + 2 * 2 / 4 + 3 * 1) / 7)
    assert m["weighted_recall"]["value"] == pytest.approx((2 * 1 / 2 + 2 * 1 + 3 * 1 / 3) / 7)
    assert m["weighted_f1"]["value"] == pytest.approx((2 * 1 / 2 + 2 * 2 / 3 + 3 * 1 / 2) / 7)
    assert m["logloss"]["value"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.8, 0.4, 0.2])))


def test_a_metric_weighted_by_counts_is_the_metric_of_the_resample_those_counts_draw():
    """The bootstrap evaluates resamples as rows weighted by their counts: the same as repeating them."""
    counts = np.array([2.0, 1, 0, 3, 1, 2, 1])  # row 2 not drawn, row 3 thrice
    rows = np.repeat(np.arange(len(Y)), counts.astype(int))
    cases = [
        (Task.BINARY, Y, P),
        (Task.BINARY, Y, np.array([0.9, 0.4, 0.3, 0.6, 0.2, 0.1, 0.45])),  # no ties
        (Task.MULTICLASS, YM, PM),
        (Task.REGRESSION, np.array([3.0, 1, 4, 1, 5, 9, 2]), np.array([2.5, 1, 3, 2, 5, 7, 2])),
    ]
    for task, y, p in cases:
        weighted = metrics._metrics_of(task, y, p)(counts[None, :])
        for name, values in weighted.items():
            assert values[0] == pytest.approx(metrics.point_metric(task, name, y[rows], p[rows])), (
                task,
                name,
            )


def test_bootstrap_deviations_are_those_of_resampling_the_rows():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 4_000)
    p = np.clip(y * 0.35 + rng.uniform(0, 0.65, 4_000), 0, 1)
    m = metrics.evaluate(Task.BINARY, y, p, ["no", "yes"])["binary_classification_metrics"]
    accuracy = m["accuracy"]["value"]
    expected = math.sqrt(accuracy * (1 - accuracy) / len(y))  # a proportion's standard error
    assert m["accuracy"]["standard_deviation"] == pytest.approx(expected, rel=0.2)
    assert 0 < m["auc"]["standard_deviation"] < 0.02
    again = metrics.evaluate(Task.BINARY, y, p, ["no", "yes"])
    assert again["binary_classification_metrics"] == m  # seeded: the same figures every time


def test_metrics_the_data_leaves_undefined_are_null_in_json():
    one_label = metrics.evaluate(Task.BINARY, np.ones(5), np.linspace(0.1, 0.9, 5), ["no", "yes"])
    m = one_label["binary_classification_metrics"]
    assert m["auc"] == {"value": None, "standard_deviation": None}
    assert m["precision"]["value"] == 1.0
    constant = metrics.evaluate(Task.REGRESSION, np.full(5, 7.0), np.arange(5.0))
    assert constant["regression_metrics"]["r2"]["value"] is None
    json.dumps(one_label, allow_nan=False)
    json.dumps(constant, allow_nan=False)


def test_nothing_predicted_positive_has_precision_zero():
    m = metrics.evaluate(Task.BINARY, Y, np.full(len(Y), 0.1), ["no", "yes"])["binary_classification_metrics"]
    assert (m["precision"]["value"], m["recall"]["value"], m["f1"]["value"]) == (0, 0, 0)


def test_point_metric_and_point_are_the_evaluation_s_values():
    assert metrics.point_metric(Task.BINARY, "auc", Y, P) == pytest.approx((4 + 2.5 + 2) / 12)
    assert metrics.point_metric(Task.MULTICLASS, "accuracy", YM, PM) == pytest.approx(4 / 7)
    y, p = np.array([100.0, 200.0, 300.0, 400.0]), np.array([110.0, 190.0, 330.0, 400.0])
    assert metrics.point(y, p)["rmse"] == pytest.approx(math.sqrt(1100 / 4))
    assert metrics.regression(y, p) == metrics.evaluate(Task.REGRESSION, y, p)


def test_mape_leaves_out_the_rows_whose_actual_is_zero_and_r2_is_against_the_mean():
    y, p = np.array([0.0, 2.0, 4.0]), np.array([1.0, 1.0, 5.0])
    m = metrics.regression(y, p)["regression_metrics"]
    assert m["mape"]["value"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["r2"]["value"] == pytest.approx(1 - (1 + 1 + 1) / (4 + 0 + 4))
