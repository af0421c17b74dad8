"""Request bodies and headers as the endpoint reads them: Accept by RFC 9110, CSV headers, missing and
infinite values, and reasons that echo input on one bounded line."""

import math

import pytest

from smray.contracts import payload
from smray.contracts.payload import CSV, JSON, JSONLINES, RequestError

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
