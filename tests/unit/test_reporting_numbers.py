"""Numbers shown to people: the digits their magnitude needs (smray.reporting.numbers)."""

import pytest

from smray.reporting import evaluation, numbers


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10939.4, "10,939"),  # the whole part stays whole: never 10,900
        (412345.0, "412,345"),
        (0.8134, "0.813"),
        (0.81, "0.81"),  # the kWh table's RMSE, not "1"
        (9.43, "9.43"),  # its prediction, not "9"
        (0.000123, "0.000123"),
        (3.2, "3.2"),
        (3.0, "3"),
        (123.456, "123"),
        (9.9996, "10"),
        (-0.0512, "-0.0512"),
        (1234567.8, "1,234,568"),
        (0.0, "0"),
        (1.23e-7, "1.23e-07"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (None, "n/a"),
    ],
)
def test_significant(value, shown):
    assert numbers.significant(value) == shown


def test_significant_takes_more_digits_when_asked():
    assert numbers.significant(0.81345, 4) == "0.8135"
    assert numbers.significant(10939.4, 4) == "10,939"


@pytest.mark.parametrize(
    ("value", "deviation", "shown"),
    [
        (0.8134, 0.0123, ("0.813", "0.012")),
        (10939.4, 212.7, ("10,939", "213")),
        (0.95, 0.0004, ("0.9500", "0.0004")),  # the deviation's first digit shows: the value follows
        (0.9, 0.0, ("0.900", "0.000")),
        (0.813, None, ("0.813", "n/a")),
        (None, None, ("n/a", "n/a")),
    ],
)
def test_a_value_and_its_deviation_share_their_decimals(value, deviation, shown):
    assert numbers.with_deviation(value, deviation) == shown


def _metric(value, deviation):
    return {"value": value, "standard_deviation": deviation}


def test_the_evaluation_s_headline_and_report_show_a_kwh_table_s_figures():
    kwh = {
        "regression_metrics": {
            "rmse": _metric(0.8134, 0.0123),
            "mae": _metric(0.6021, 0.01),
            "r2": _metric(0.9312, 0.004),
            "mape": _metric(0.0734, 0.002),
        },
        "rows": 2000,
    }
    assert evaluation.headline(kwh) == "rmse 0.813 (± 0.012), mae 0.602, r2 0.931, mape 0.0734"
    page = evaluation.page("t", kwh, [], {})
    assert "<td>rmse</td><td>0.813</td><td>± 0.012</td>" in page


def test_a_classification_s_headline_and_report_leave_out_the_matrix_and_curves():
    binary = {
        "binary_classification_metrics": {
            "accuracy": _metric(0.9134, 0.0061),
            "precision": _metric(0.8, 0.01),
            "recall": _metric(0.7, 0.01),
            "f1": _metric(0.7467, 0.01),
            "auc": _metric(None, None),
            "logloss": _metric(0.2511, 0.01),
            "confusion_matrix": {"no": {"no": 5, "yes": 1}, "yes": {"no": 0, "yes": 4}},
            "receiver_operating_characteristic_curve": {
                "false_positive_rates": [],
                "true_positive_rates": [],
            },
        },
        "rows": 10,
    }
    assert evaluation.headline(binary) == "accuracy 0.913 (± 0.006), auc n/a, f1 0.747, logloss 0.251"
    page = evaluation.page("t", binary, [], {})
    assert "<td>auc</td><td>n/a</td>" in page and "confusion_matrix" not in page
