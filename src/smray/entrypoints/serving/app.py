"""The model's request handling as a WSGI application: parse -> predict -> render, for every task (a
regression's number, a classification's labels and probabilities: see smray.contracts.payload). Everything
HTTP (connections, limits, deadlines, workers) is nginx's and gunicorn's.

gunicorn builds one application per worker (`create()`), so each worker loads the model once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path

from smray import model_artifact
from smray.contracts import payload

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "SMRAY_SERVE_MODEL_DIR"
WORKERS_ENV = "SMRAY_SERVE_WORKERS"
TEXT = "text/plain; charset=utf-8"

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class Application:
    def __init__(self, model: model_artifact.Model, workers: int) -> None:
        self.model = model
        self.text = frozenset(model.transform.schema.categorical)  # the features whose values are text
        self.parameters = json.dumps(
            {"MaxConcurrentTransforms": workers, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
        ).encode()

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        status, body, content_type = self.answer(environ)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(f"{status.value} {status.phrase}", headers)
        return [body]

    def answer(self, environ: dict) -> tuple[HTTPStatus, bytes, str]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/ping" and method in ("GET", "HEAD"):
            return HTTPStatus.OK, b"", "text/plain"
        if path == "/execution-parameters" and method == "GET":
            return HTTPStatus.OK, self.parameters, payload.JSON
        if path == "/invocations" and method == "POST":
            return self.invoke(environ)
        if path in ("/ping", "/execution-parameters", "/invocations"):
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{payload.quoted(method, 20)} is not allowed on {path}"
            )
        return _error(
            HTTPStatus.NOT_FOUND, f"no such path {payload.quoted(path)}: use /ping or POST /invocations"
        )

    def invoke(self, environ: dict) -> tuple[HTTPStatus, bytes, str]:
        try:
            body = _body(environ)
            kind = payload.media_type(environ.get("CONTENT_TYPE"))
            frame = payload.parse(body, kind, self.model.features, self.text)
            answer_type = payload.response_type(environ.get("HTTP_ACCEPT"), kind)
            predictions = self.model.predict(frame, scaled=False)
            answer = payload.render(predictions, answer_type, self.model.task, self.model.labels)
        except payload.RequestError as exc:
            return _error(HTTPStatus(exc.status), exc.message)
        except Exception as exc:  # the model's own failure: an answer with a reason, the details logged
            log.exception("prediction failed")
            reason = f"{type(exc).__name__}: {payload.quoted(exc, 200)}"  # XGBoost's span several lines
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"prediction failed: {reason}")
        return HTTPStatus.OK, answer, answer_type


def _body(environ: dict) -> bytes:
    """The front has checked the length against the limit and buffered the whole body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload.check_size(length)  # before reading it
    return environ["wsgi.input"].read(length) if length else b""


def _error(status: HTTPStatus, message: str) -> tuple[HTTPStatus, bytes, str]:
    return status, (message + "\n").encode(), TEXT


def create() -> Application:
    """gunicorn's factory, called once in each worker: the model is loaded there, after the fork."""
    workers = int(os.environ[WORKERS_ENV])
    model = model_artifact.load(Path(os.environ[MODEL_DIR_ENV]))
    model.booster.set_param({"nthread": max(1, (os.cpu_count() or 1) // workers)})
    return Application(model, workers)
