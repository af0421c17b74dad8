"""`serve` as SageMaker calls it: predictions in every supported format, a clear 4xx for every bad
request, and every hostile client answered, from the real process (nginx in front of gunicorn)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from smray import model_artifact
from smray.contracts import payload
from smray.workstation.endpoints.client import Connection
from tests.support import hostile
from tests.support.models import CLIENT_TIMEOUT_S, free_port, sample_rows, start_serve, wait_ping


@pytest.fixture(scope="module")
def expected(model_dir):
    rows = sample_rows(5)
    return rows, model_artifact.load(model_dir).predict(rows, scaled=False)


def _csv(rows) -> bytes:
    return rows.to_csv(header=False, index=False).encode()


def test_csv_in_csv_out(server, expected):
    url, _ = server
    rows, predictions = expected
    answer = Connection(url).invoke(_csv(rows), "text/csv")
    assert answer.status == 200 and answer.content_type == "text/csv"
    got = [float(line) for line in answer.body.decode().split()]
    assert got == pytest.approx(list(predictions), rel=1e-5)


def test_json_and_jsonlines_with_rows_by_name_and_json_answers(server, expected):
    url, _ = server
    rows, predictions = expected
    conn = Connection(url)
    by_name = json.dumps({"instances": rows.to_dict(orient="records")}).encode()
    answer = conn.invoke(by_name, "application/json")
    assert answer.content_type == "application/json"
    assert [p["score"] for p in json.loads(answer.body)["predictions"]] == pytest.approx(
        list(predictions), rel=1e-5
    )

    lines = "\n".join(json.dumps(r) for r in rows.to_numpy().tolist()).encode()
    answer = conn.invoke(lines, "application/jsonlines", accept="text/csv")
    assert answer.content_type == "text/csv"
    assert [float(v) for v in answer.body.split()] == pytest.approx(list(predictions), rel=1e-5)


def test_csv_with_a_header_in_another_order(server, expected):
    url, _ = server
    rows, predictions = expected
    shuffled = rows[list(reversed(rows.columns))]
    answer = Connection(url).invoke(shuffled.to_csv(index=False).encode(), "text/csv; charset=utf-8")
    assert [float(v) for v in answer.body.split()] == pytest.approx(list(predictions), rel=1e-5)


def test_ping_and_execution_parameters(server):
    url, _ = server
    conn = Connection(url)
    assert conn.request("GET", "/ping").status == 200
    params = json.loads(conn.request("GET", "/execution-parameters").body)
    assert params == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}


BAD_REQUESTS = {
    "wrong column count": (b"1,2,3\n", "text/csv", "", 400, "has 3 value(s); the model takes"),
    "non-numeric": (None, "text/csv", "", 400, "is not a number"),
    "empty body": (b"", "text/csv", "", 400, "empty request body"),
    "blank body": (b"\n  \n", "application/json", "", 400, "empty request body"),
    "over 6 MiB": (b"1" * (6 * 1024 * 1024 + 1), "text/csv", "", 413, "over the 6,291,456-byte limit"),
    "unsupported type": (b"<x/>", "application/xml", "", 415, "unsupported content type"),
    "unsupported accept": (None, "text/csv", "image/png", 406, "cannot answer in 'image/png'"),
    "invalid json": (b"{not json", "application/json", "", 400, "invalid JSON"),
    "unknown feature": (
        b'{"instances": [{"NOPE": 1}]}',
        "application/json",
        "",
        400,
        "unknown feature(s) ['NOPE']",
    ),
    "infinite value": (None, "application/json", "", 400, "not a finite number"),
    "a misspelled CSV header": (
        None,
        "text/csv",
        "",
        400,
        "unknown feature(s) ['YEAR_BUILD']; missing feature(s) ['YEAR_BUILT']",
    ),
    # Bodies that used to get no answer at all (the connection just closed):
    "a 400-digit JSON integer": (
        b"[[" + b"9" * 400 + b",1,1,1,1,1,1,1]]",
        "application/json",
        "",
        400,
        "finite",
    ),
    "a 5000-digit JSON integer": (b"[[" + b"9" * 5000 + b"]]", "application/json", "", 400, "invalid JSON"),
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, "application/json", "", 400, "nested too deeply"),
    "a CSV field over 128 KiB": (b'"' + b"1" * 200_000 + b'"\n', "text/csv", "", 400, "CSV field"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_clear_4xx(server, case):
    url, _ = server
    body, content_type, accept, status, message = BAD_REQUESTS[case]
    row = sample_rows(1).to_numpy().tolist()[0]
    if case == "non-numeric":
        body = ",".join(["abc", *map(str, row[1:])]).encode()
    elif case == "unsupported accept":
        body = ",".join(map(str, row)).encode()
    elif case == "infinite value":
        body = json.dumps([[1e400, *row[1:]]]).encode()  # json.dumps writes Infinity
    elif case == "a misspelled CSV header":
        body = sample_rows(2).rename(columns={"YEAR_BUILT": "YEAR_BUILD"}).to_csv(index=False).encode()
    answer = Connection(url).invoke(body, content_type, accept)
    assert answer.status == status, answer.body
    assert message in answer.body.decode()


def test_hostile_clients_get_their_status(server):
    url, _ = server
    hostile.check_every_case(int(url.rsplit(":", 1)[1]), CLIENT_TIMEOUT_S, "at serve")


def test_unknown_paths_are_404(server):
    url, _ = server
    assert Connection(url).request("GET", "/nothing").status == 404
    assert Connection(url).request("POST", "/predict", b"1").status == 404


def test_a_404_reason_escapes_the_path_on_one_line(server):
    port = int(server[0].rsplit(":", 1)[1])
    reply = hostile.exchange(port, b"GET /a%0d%0aInjected:%20yes%1b HTTP/1.1\r\nHost: smray\r\n\r\n")
    assert reply.statuses == [404], reply
    assert reply.bodies[0] == b"no such path '/a\\r\\nInjected: yes\\x1b': use /ping or POST /invocations\n"
    reply = hostile.exchange(port, b"GET /" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: smray\r\n\r\n")
    assert reply.statuses == [404] and len(reply.bodies[0]) < 200, reply


@pytest.mark.parametrize(
    ("accept", "request_type", "answer_type"),
    [
        ("application/json;q=0, text/csv", "application/json", "text/csv"),
        ("text/*", "application/json", "text/csv"),
        ("*/*;q=0.1, application/jsonlines;q=0.5", "text/csv", "application/jsonlines"),
        ("application/json;q=0", "application/json", None),
    ],
)
def test_accept_q_values_and_wildcards_pick_the_answer_type(
    server, expected, accept, request_type, answer_type
):
    url, _ = server
    rows, _ = expected
    body = _csv(rows) if request_type == "text/csv" else json.dumps(rows.to_numpy().tolist()).encode()
    answer = Connection(url).invoke(body, request_type, accept)
    if answer_type is None:
        assert answer.status == 406 and b"cannot answer in" in answer.body, answer
    else:
        assert (answer.status, answer.content_type) == (200, answer_type), answer


@pytest.mark.parametrize("kind", ["text/csv", "application/json"])
def test_nan_is_a_missing_value_and_inf_is_refused_in_csv_and_json(server, kind):
    url, _ = server
    row = sample_rows(1).to_numpy().tolist()[0]

    def send(first: str):
        cells = [first, *map(str, row[1:])]
        body = ",".join(cells) if kind == "text/csv" else "[[" + ",".join(cells) + "]]"
        return Connection(url).invoke(body.encode(), kind)

    missing = send("" if kind == "text/csv" else "null")
    assert missing.status == 200, missing
    for nan in ("nan", "NaN") if kind == "text/csv" else ("NaN", '"nan"'):
        assert send(nan).body == missing.body, nan
    for inf in ("inf", "-inf", "1e400") if kind == "text/csv" else ("Infinity", "-Infinity", '"inf"'):
        answer = send(inf)
        assert answer.status == 400, (inf, answer)
        assert "is not a finite number" in answer.body.decode(), answer
        assert "a missing value is an empty field, null or nan" in answer.body.decode(), answer


def test_a_dead_worker_is_replaced_and_sigterm_answers_what_is_in_flight(model_dir, tmp_path):
    port = free_port()
    process = start_serve(model_dir, port, tmp_path, "--workers", "3", "--drain-s", "10")
    try:
        wait_ping(port, process)
        arbiter = _children(process.pid, "gunicorn")[0]
        workers = _children(arbiter)
        assert len(workers) == 3
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (now := _children(arbiter)) and (len(now) != 3 or workers[0] in now):
            assert time.monotonic() < deadline, f"worker not replaced: {now}"
            time.sleep(0.2)

        # a request still sending its body at SIGTERM is answered, and serve exits right after
        stopped_at = []
        reply = hostile.in_flight_through_stop(
            port,
            _csv(sample_rows(2)),
            lambda: (process.send_signal(signal.SIGTERM), stopped_at.append(time.monotonic())),
        )
        assert reply.statuses == [200], reply
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - stopped_at[0] < 10  # within the drain bound
        with pytest.raises(OSError):
            Connection(f"http://127.0.0.1:{port}", timeout_s=2).request("GET", "/ping")
    finally:
        if process.poll() is None:
            process.kill()


def _children(pid: int, name: str = "") -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(pid), *(["-f", name] if name else [])], capture_output=True, text=True
    )
    return [int(p) for p in found.stdout.split()]


def test_a_bad_model_fails_at_start_with_a_clear_message(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("not a model")
    process = start_serve(tmp_path / "model", free_port(), tmp_path)
    process.communicate(timeout=60)
    assert process.returncode == 1
    failure = (tmp_path / "opt_ml" / "output" / "failure").read_text()
    assert "cannot load the model" in failure and "is not a valid XGBoost model" in failure
    assert len(failure.strip().splitlines()) == 1


def test_a_60_second_load_from_another_process_has_no_errors(server, tmp_path):
    url, _ = server
    body_file = tmp_path / "body.csv"
    body_file.write_bytes(_csv(sample_rows(1)))
    out = subprocess.run(
        [sys.executable, "-m", "smray.workstation.endpoints.client", url, str(body_file), payload.CSV, "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["errors"] == 0, result["first_errors"]
    assert result["requests"] > 1000  # a real load, not a handful of requests
    print("load:", result)
