"""Request bodies and headers as the endpoint reads them: Accept by RFC 9110, CSV headers, missing and
infinite values, text values of string features, and reasons that echo input on one bounded line; and the
answers of each task."""

import json
import math

import numpy as np
import pytest

from smray.contracts import payload
from smray.contracts.payload import CSV, JSON, JSONLINES, RequestError
from smray.schema import Task

FEATURES = ["YEAR_BUILT", "SQUARE_FEET", "DECK"]


@pytest.mark.parametrize(
    ("accept", "request_type", "answer"),
    [
        (None, CSV, CSV),
        ("", JSON, JSON),
        ("*/*", JSON, JSON),  # a tie among all: the request's own type
        ("application/json;q=0, text/csv", JSON, CSV),
        ("text/*", JSON, CSV),
        ("application/*", CSV, JSON),  # a tie between JSON and JSON lines: the order we list them in
        ("text/csv, application/json", JSON, CSV),  # a tie between two listed: the first listed
        ("application/json;q=0.5, text/csv;q=0.9", JSON, CSV),
        ("*/*;q=0.1, application/jsonlines;q=0.5", CSV, JSONLINES),
        ("application/x-ndjson", CSV, JSONLINES),
        ("text/*;q=0.8, text/csv;q=0, */*;q=0.1", CSV, JSON),  # the most specific range gives the q
        ("text/csv; charset=utf-8; q=1; ext=2", JSON, CSV),  # media parameters are not matched
        ("TEXT/CSV;Q=0.5", JSON, CSV),
    ],
)
def test_accept_picks_the_highest_q_supported_type(accept, request_type, answer):
    assert payload.response_type(accept, request_type) == answer


@pytest.mark.parametrize(
    "accept", ["application/json;q=0", "image/png", "*/*;q=0", "text/*;q=0, application/*;q=0"]
)
def test_accept_with_nothing_supported_acceptable_is_406(accept):
    with pytest.raises(RequestError) as caught:
        payload.response_type(accept, CSV)
    assert caught.value.status == 406 and "cannot answer in" in caught.value.message


@pytest.mark.parametrize("q", ["abc", "2", "-1", "nan"])
def test_an_invalid_q_value_is_400(q):
    with pytest.raises(RequestError) as caught:
        payload.response_type(f"text/csv;q={q}", CSV)
    assert caught.value.status == 400 and "invalid q-value" in caught.value.message


def test_quoted_escapes_control_characters_and_caps_the_length():
    assert payload.quoted("/a\r\nb\x1b") == "'/a\\r\\nb\\x1b'"
    assert payload.quoted("x" * 1000, 10) == "'xxxxxxxxxx'..."


def _parse(text: str):
    return payload.parse(text.encode(), CSV, FEATURES)


def test_a_csv_header_in_any_order_names_the_columns():
    frame = _parse("DECK,YEAR_BUILT,SQUARE_FEET\n1,1990,1500\n")
    assert frame.to_numpy().tolist() == [[1990, 1500, 1]]


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (
            "YEAR_BUILD,SQUARE_FEET,DECK",
            "unknown feature(s) ['YEAR_BUILD']; missing feature(s) ['YEAR_BUILT']",
        ),
        (
            "a,b,c",
            "unknown feature(s) ['a', 'b', 'c']; missing feature(s) ['YEAR_BUILT', 'SQUARE_FEET', 'DECK']",
        ),
        ("YEAR_BUILT,SQUARE_FEET", "missing feature(s) ['DECK']"),
        (
            "YEAR_BUILT,YEAR_BUILT,DECK",
            "missing feature(s) ['SQUARE_FEET']; repeated feature(s) ['YEAR_BUILT']",
        ),
    ],
)
def test_a_csv_header_that_does_not_name_each_feature_once_is_named_in_the_400(first, reason):
    with pytest.raises(RequestError) as caught:
        _parse(f"{first}\n1990,1500,1\n")
    assert caught.value.status == 400 and caught.value.message == f"CSV header: {reason}"


def test_a_first_row_of_mostly_numbers_is_data_not_a_header():
    with pytest.raises(RequestError) as caught:
        _parse("1990,abc,1\n")
    assert caught.value.message == "row 1, SQUARE_FEET: 'abc' is not a number"


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (CSV, "1990,,1\n1990,nan,1\n1990,NaN,1\n"),
        (JSON, '[[1990, null, 1], [1990, NaN, 1], [1990, "nan", 1]]'),
        (JSONLINES, '[1990, null, 1]\n[1990, NaN, 1]\n{"YEAR_BUILT": 1990, "SQUARE_FEET": "", "DECK": 1}\n'),
    ],
)
def test_empty_null_and_nan_are_missing_values(kind, body):
    frame = payload.parse(body.encode(), kind, FEATURES)
    assert all(math.isnan(v) for v in frame["SQUARE_FEET"]) and len(frame) == 3


@pytest.mark.parametrize(
    ("kind", "value"),
    [(CSV, "inf"), (CSV, "-inf"), (CSV, "1e400"), (JSON, "Infinity"), (JSON, "-Infinity"), (JSON, '"inf"')],
)
def test_infinities_are_refused_with_the_missing_value_rule(kind, value):
    body = f"1990,{value},1" if kind == CSV else f"[[1990, {value}, 1]]"
    with pytest.raises(RequestError) as caught:
        payload.parse(body.encode(), kind, FEATURES)
    assert caught.value.message.startswith("row 1, SQUARE_FEET: ")
    assert caught.value.message.endswith(
        "is not a finite number (a missing value is an empty field, null or nan)"
    )


def test_unknown_json_names_are_quoted_and_capped():
    row = {"YEAR_BUILT": 1, "SQUARE_FEET": 1, "DECK": 1, "a\nb": 1} | {f"x{i}": 1 for i in range(20)}
    with pytest.raises(RequestError) as caught:
        payload.parse(str(row).replace("'", '"').encode(), JSON, FEATURES)
    assert "\n" not in caught.value.message and "'a\\nb'" in caught.value.message
    assert caught.value.message.endswith(", and 13 more]")


# A model with string features: text values, in CSV, JSON and JSON Lines.
MIXED = ["state", "minutes", "plan", "calls"]
TEXT = {"state", "plan"}


def _mixed(body: str, kind: str = CSV):
    return payload.parse(body.encode(), kind, MIXED, TEXT)


def _rows(frame) -> list[list]:
    """Values as plain Python, NaN as None, for comparing."""
    return [[None if v is None or v != v else v for v in row] for row in frame.astype(object).values.tolist()]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (CSV, 'CA,1.5,"premium, annual",3\nNY,,,\n'),
        (CSV, 'plan,calls,state,minutes\n"premium, annual",3,CA,1.5\n,,NY,\n'),  # a header in another order
        (CSV, 'state,minutes,plan,calls\r\nCA,1.5,"premium, annual",3\r\nNY,nan,"",\r\n'),
        (JSON, '[["CA", 1.5, "premium, annual", 3], ["NY", null, null, NaN]]'),
        (
            JSON,
            '{"instances": [{"plan": "premium, annual", "calls": 3, "state": "CA", "minutes": 1.5},'
            ' {"state": "NY", "minutes": "", "plan": "", "calls": null}]}',
        ),
        (JSONLINES, '{"features": ["CA", 1.5, "premium, annual", 3]}\n["NY", null, "", null]\n'),
    ],
)
def test_string_features_come_through_as_text_and_empty_values_as_missing(kind, body):
    frame = _mixed(body, kind)
    assert list(frame.columns) == MIXED
    assert _rows(frame) == [["CA", 1.5, "premium, annual", 3.0], ["NY", None, None, None]]
    assert frame["minutes"].dtype == "float64" and frame["calls"].dtype == "float64"


def test_a_number_in_a_string_feature_is_its_text():
    # a CSV cell as written (a code "02134" is not the number 2134), even where every cell is a number
    assert _rows(_mixed("94103,1,02134,3\n")) == [["94103", 1.0, "02134", 3.0]]
    # a JSON number or boolean as the training data's text of it (transform.as_text)
    frame = _mixed("[[1, 1, 1.0, 1], [1.5, 1, true, 1], [NaN, 1, 7000000000, 1]]", JSON)
    assert _rows(frame) == [["1", 1.0, "1", 1.0], ["1.5", 1.0, "true", 1.0], [None, 1.0, "7000000000", 1.0]]


def test_a_first_row_of_values_with_text_is_data_not_a_header():
    # most of its cells are words, but each numeric feature's cell is a number or empty
    assert _rows(_mixed("CA,1.5,basic,\nNY,2,premium,4\n"))[0] == ["CA", 1.5, "basic", None]
    # a model of text features only: a first row is a header where it names a feature
    for body in (b"CA,basic\n", b"plan,state\nbasic,CA\n"):
        assert _rows(payload.parse(body, CSV, ["state", "plan"], TEXT)) == [["CA", "basic"]]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "stat,minutes,plan,calls\nCA,1,basic,2\n",
            "CSV header: unknown feature(s) ['stat']; missing feature(s) ['state']",
        ),
        ("a,b,c,d\nCA,1,basic,2\n", "CSV header: unknown feature(s) ['a', 'b', 'c', 'd']; missing"),
        ("state,minutes,plan\nCA,1,basic\n", "CSV header: missing feature(s) ['calls']"),
        (
            "state,minutes,plan,calls,churned\nCA,1,basic,2,yes\n",
            "CSV header: unknown feature(s) ['churned']",
        ),
        ("CA,1,basic\n", "row 1 has 3 value(s); the model takes 4: state, minutes, plan, calls"),
        ("state,minutes,plan,calls\nCA,1,basic,2\nCA,1,basic\n", "row 2 has 3 value(s); the model takes 4"),
        ("CA,abc,basic,2\n", "row 1, minutes: 'abc' is not a number"),
        ("CA,1,basic,2\nCA,1,basic,inf\n", "row 2, calls: 'inf' is not a finite number"),
    ],
)
def test_bad_csv_rows_for_a_model_with_string_features_are_named_in_the_400(body, reason):
    with pytest.raises(RequestError) as caught:
        _mixed(body)
    assert caught.value.status == 400 and caught.value.message.startswith(reason), caught.value.message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('[["CA", "abc", "basic", 1]]', "row 1, minutes: 'abc' is not a number"),
        ('[["CA", 1, ["basic"], 1]]', "row 1, plan: \"['basic']\" is not text or a number"),
        ('[{"state": "CA", "minutes": 1, "plan": "basic"}]', "row 1: missing feature(s) ['calls']"),
        ('[["CA", 1, "basic"]]', "row 1 has 3 value(s); the model takes 4"),
    ],
)
def test_bad_json_rows_for_a_model_with_string_features_are_named_in_the_400(body, reason):
    with pytest.raises(RequestError) as caught:
        _mixed(body, JSON)
    assert caught.value.status == 400 and caught.value.message.startswith(reason), caught.value.message


def test_a_numeric_model_keeps_parsing_csv_numbers_in_c(monkeypatch):
    calls = []
    original = payload._csv_numbers
    monkeypatch.setattr(payload, "_csv_numbers", lambda *a: calls.append(a) or original(*a))
    assert payload.parse(b"1990,1500,1\n", CSV, FEATURES).to_numpy().tolist() == [[1990, 1500, 1]]
    _mixed("CA,1,basic,2\n")
    assert len(calls) == 1  # not for text, which must stay text


@pytest.mark.parametrize("text", [set(), TEXT])
def test_csv_numbers_with_blanks_quotes_and_words_read_the_same_as_cell_by_cell(text):
    """Numeric cells past the all-numbers C path: read in one pass, or cell by cell where one is not a
    finite number or empty; either way the same values, and the first bad one named."""
    features = ["minutes", "calls", "state"]

    def parse(body: str):
        return payload.parse(body.encode(), CSV, features, text)

    rows = _rows(parse('1.5," 2 ",7\n , nan ,"8"\n-1e3,,9\n'))
    assert rows == [
        [1.5, 2.0, "7" if text else 7.0],
        [None, None, "8" if text else 8.0],
        [-1000.0, None, "9" if text else 9.0],
    ]
    with pytest.raises(RequestError) as caught:
        parse("1,2,3\n4,5 x,6\n")
    assert caught.value.message == "row 2, calls: '5 x' is not a number"


# Answers per task.
def test_a_regression_answers_a_number_per_row():
    predictions = np.array([1.5, 2.25], dtype="float32")
    assert payload.render(predictions, CSV) == b"1.5\n2.25\n"
    assert json.loads(payload.render(predictions, JSON)) == {"predictions": [{"score": 1.5}, {"score": 2.25}]}
    assert payload.render(predictions, JSONLINES) == b'{"score": 1.5}\n{"score": 2.25}\n'


def test_a_binary_task_answers_the_positive_labels_probability_and_in_json_the_label():
    probabilities = np.array([0.25, 0.5, 0.75], dtype="float32")
    labels = ("no", "yes")
    assert payload.render(probabilities, CSV, Task.BINARY, labels) == b"0.25\n0.5\n0.75\n"
    answers = json.loads(payload.render(probabilities, JSON, Task.BINARY, labels))["predictions"]
    assert answers == [
        {"score": 0.25, "predicted_label": "no", "probabilities": {"no": 0.75, "yes": 0.25}},
        {"score": 0.5, "predicted_label": "no", "probabilities": {"no": 0.5, "yes": 0.5}},
        {"score": 0.75, "predicted_label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
    ]
    lines = payload.render(probabilities, JSONLINES, Task.BINARY, labels).decode().splitlines()
    assert [json.loads(line) for line in lines] == answers


def test_a_multiclass_task_answers_the_predicted_label_and_in_json_each_labels_probability():
    probabilities = np.array([[0.5, 0.25, 0.25], [0.0, 0.25, 0.75], [0.25, 0.5, 0.25]], dtype="float32")
    labels = ("bronze", 'gold, "plus"', "silver")
    assert payload.render(probabilities, CSV, Task.MULTICLASS, labels) == (
        b'bronze\nsilver\n"gold, ""plus"""\n'  # CSV quoting, one line per row
    )
    answers = json.loads(payload.render(probabilities, JSON, Task.MULTICLASS, labels))["predictions"]
    assert answers[1] == {
        "predicted_label": "silver",
        "probabilities": {"bronze": 0.0, 'gold, "plus"': 0.25, "silver": 0.75},
    }
    assert [a["predicted_label"] for a in answers] == ["bronze", "silver", 'gold, "plus"']
    lines = payload.render(probabilities, JSONLINES, Task.MULTICLASS, labels).decode().splitlines()
    assert [json.loads(line) for line in lines] == answers
