"""`serve` answering classifiers with string features, from the real process (nginx in front of gunicorn):
text values in CSV (positional or with a header in any order), JSON and JSON Lines, missing values and a
category the model never saw; a binary task's and a multiclass task's answers in each type; Batch
Transform's Line split, one answer line per input line; and a one-line 400 for each bad request."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from smray import model_artifact
from smray.schema import Task
from smray.workstation.endpoints.client import Connection
from tests.support.classifiers import build_classifier, raw_rows
from tests.support.models import free_port, start_serve, stop, wait_ping


@pytest.fixture(scope="module", params=[Task.BINARY, Task.MULTICLASS], ids=lambda t: t.value)
def served(request, tmp_path_factory):
    """(url, the model as evaluate loads it) for a binary and a multiclass model, each served."""
    folder = build_classifier(tmp_path_factory.mktemp("model") / "model", request.param)
    port = free_port()
    process = start_serve(folder, port, tmp_path_factory.mktemp("serve"), "--workers", "1")
    wait_ping(port, process)
    yield f"http://127.0.0.1:{port}", model_artifact.load(folder)
    stop(process)


UNSEEN = "ZZ"


def _rows() -> pd.DataFrame:
    """Rows with missing values in every feature, and a state the model never saw."""
    rows = raw_rows(40, seed=11, missing=0.2)
    rows.loc[3, "state"] = UNSEEN
    assert rows.isna().any().all()
    return rows


def _csv(rows: pd.DataFrame, header: bool = False) -> bytes:
    return rows.to_csv(header=header, index=False).encode()


def _expected(model: model_artifact.Model, rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The model's probabilities for the raw rows, and the labels it predicts (an unseen category is a
    missing value: the test below checks the endpoint answers so)."""
    probabilities = model.predict(rows.where(rows != UNSEEN, None), scaled=False)
    if model.task is Task.BINARY:
        return probabilities, [model.labels[int(p > 0.5)] for p in probabilities]
    return probabilities, [model.labels[i] for i in probabilities.argmax(axis=1)]


def _csv_answers(model: model_artifact.Model, body: bytes) -> list:
    lines = body.decode().splitlines()
    if model.task is Task.BINARY:
        return [float(v) for v in lines]
    return list(pd.read_csv(io.StringIO(body.decode()), header=None, dtype=str)[0])


def test_csv_positional_and_with_a_header_in_another_order(served):
    url, model = served
    rows = _rows()
    probabilities, labels = _expected(model, rows)
    conn = Connection(url)
    for body in (_csv(rows), _csv(rows[list(reversed(rows.columns))], header=True)):
        answer = conn.invoke(body, "text/csv")
        assert (answer.status, answer.content_type) == (200, "text/csv"), answer.body
        got = _csv_answers(model, answer.body)
        if model.task is Task.BINARY:  # the positive label's probability, as SageMaker's XGBoost answers
            assert got == pytest.approx(list(probabilities), rel=1e-6)
        else:  # the predicted label's text
            assert got == labels


def test_json_answers_the_predicted_label_and_each_labels_probability(served):
    url, model = served
    rows = _rows()
    probabilities, labels = _expected(model, rows)
    body = json.dumps({"instances": rows.astype(object).where(rows.notna(), None).to_dict("records")})
    answer = Connection(url).invoke(body.encode(), "application/json")
    assert (answer.status, answer.content_type) == (200, "application/json"), answer.body
    predictions = json.loads(answer.body)["predictions"]
    assert [p["predicted_label"] for p in predictions] == labels
    assert all(list(p["probabilities"]) == list(model.labels) for p in predictions)
    if model.task is Task.BINARY:
        assert [p["score"] for p in predictions] == pytest.approx(list(probabilities), rel=1e-6)
        assert [p["probabilities"][model.labels[-1]] for p in predictions] == [
            p["score"] for p in predictions
        ]
    else:
        assert all("score" not in p for p in predictions)
        got = [list(p["probabilities"].values()) for p in predictions]
        assert np.allclose(got, probabilities, rtol=1e-6)
    assert all(sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5) for p in predictions)


def test_an_unseen_category_is_answered_as_a_missing_value(served):
    url, _ = served
    rows = _rows().head(4)
    missing = rows.copy()
    missing.loc[3, "state"] = None
    conn = Connection(url)
    unseen = conn.invoke(_csv(rows), "text/csv", "application/json")
    assert unseen.status == 200, unseen.body
    assert unseen.body == conn.invoke(_csv(missing), "text/csv", "application/json").body


@pytest.mark.parametrize("accept", ["application/jsonlines", "text/csv"])
def test_batch_transform_line_split_answers_a_line_per_input_line(served, accept):
    url, model = served
    rows = _rows()
    _, labels = _expected(model, rows)
    lines = rows.astype(object).where(rows.notna(), None).to_dict("records")
    for content_type, body in (
        ("application/jsonlines", "".join(json.dumps(r) + "\n" for r in lines).encode()),
        ("text/csv", _csv(rows)),
    ):
        answer = Connection(url).invoke(body, content_type, accept)
        assert (answer.status, answer.content_type) == (200, accept), answer.body
        assert len(answer.body.decode().splitlines()) == len(rows)
        if accept == "text/csv":
            continue
        got = [json.loads(line) for line in answer.body.decode().splitlines()]
        assert [g["predicted_label"] for g in got] == labels


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"state,minutes,plan\nCA,1,basic\n", "text/csv", "CSV header: missing feature(s) ['calls']"),
        (b"CA,1,basic\n", "text/csv", "row 1 has 3 value(s); the model takes 4: state, minutes, plan, calls"),
        (b"CA,abc,basic,2\n", "text/csv", "row 1, minutes: 'abc' is not a number"),
        (b'[["CA", "abc", "basic", 2]]', "application/json", "row 1, minutes: 'abc' is not a number"),
        (
            b'{"state": "CA", "minutes": 1, "plan": "basic"}\n',
            "application/jsonlines",
            "row 1: missing feature(s) ['calls']",
        ),
    ],
)
def test_bad_requests_get_a_one_line_400(served, body, content_type, reason):
    url, _ = served
    answer = Connection(url).invoke(body, content_type)
    assert answer.status == 400, answer.body
    text = answer.body.decode()
    assert text.startswith(reason) and text.count("\n") == 1, text
