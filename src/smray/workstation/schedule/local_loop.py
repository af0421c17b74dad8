"""`smray schedule`: the retraining loop of the AWS state machine, on the local target.

At each fire time of a `rate(...)`/`cron(...)` expression it runs the local workflow, then deploys the new
model only when it passed the gate AND is not worse than the model the endpoint serves now on the gate's
metric and direction (a higher accuracy, a lower RMSE), both scored on this run's test split; the endpoint
is swapped without dropping requests. Otherwise the new version is rejected with the reason and the
endpoint is left as it was.

- Runs never overlap: fire times missed while a run was going are skipped (and said so); one scheduler
  per smray home (a lock file).
- The input is the state machine's execution input JSON, re-read before each run (as EventBridge sends
  the rule's current input): DataUri (a local file or folder, or file://), Threshold (default: the
  gate's), EndpointName, Image, ProcessingInstanceCount, TrainingInstanceCount, NumRound, TuningTrials,
  and locally also Schema. The gate's metric and direction are the scheduler's (`--gate`), as they are
  the state machine's definition's on AWS.
- Ctrl-C or SIGTERM: between runs, stops at once; during a run, the run finishes first; a second signal
  abandons the run (the endpoint stays as it was; a deploy already under way completes).
- Every run's outcome is appended to <home>/schedule-history.jsonl (`smray schedule history`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from smray import errors, locks, metrics, model_artifact, tables, transform, workflow
from smray import schema as schema_mod
from smray.errors import UserError
from smray.locks import exclusive
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval, ModelVersion
from smray.reporting import numbers
from smray.schema import Task
from smray.workstation import jsonl, tracking, validation
from smray.workstation import local_workflow as flow
from smray.workstation.endpoints.local import LocalEndpoints
from smray.workstation.schedule.expressions import Rate, Schedule

HISTORY = "schedule-history.jsonl"


@dataclass
class Record:
    started: str
    finished: str
    execution: str
    status: str  # Succeeded / Failed / Abandoned / Error
    new_version: str
    new_score: float | None  # the gate's metric of the new model on this run's test split
    served_before: str
    served_score: float | None  # and of the model served before, on the same rows
    decision: str
    served_after: str
    metric: str = ""  # the gate's metric: rmse, accuracy, ...


# The input's keys, by the Settings field each sets (the state machine's names, as AWS takes them)
INPUT_KEYS = {
    "image": "Image",
    **{p.field: p.name for p in workflow.PARAMETERS},
    "endpoint": "EndpointName",
}


def read_input(path: Path, gate: str = workflow.GATE.default) -> tuple[Path | None, flow.Settings]:
    """The input's data and the run's settings, gated by `gate` (`--gate`: default, the task's)."""
    try:
        given = json.loads(validation.regular_file(path, "the schedule's input").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the schedule's input {path}: {exc}") from exc
    if not isinstance(given, dict):
        raise UserError(f"{path}: the input must be a JSON object")
    try:
        data = validation.text(given["DataUri"], "DataUri") if "DataUri" in given else ""
        if data.startswith("s3://"):
            raise UserError(
                f"DataUri {tracking.redact(data)} is in S3; the local loop reads local files (or file://)"
            )
        schema = validation.text(given["Schema"], "Schema") if "Schema" in given else ""
        d = flow.Settings()
        settings = flow.Settings(
            **{field: given.get(key, getattr(d, field)) for field, key in INPUT_KEYS.items()},
            schema=schema_mod.load(validation.regular_file(Path(schema), "Schema")) if schema else d.schema,
            gate=gate,
        )
        settings = flow.checked(settings, INPUT_KEYS | {"gate": workflow.GATE.option}, together=False)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    source = Path(urlparse(data).path if data.startswith("file://") else data) if data else None
    return source, settings


def score_on_test(
    test_dir: Path, encoded_by: transform.Transform, model: model_artifact.Model, metric: str
) -> float:
    """`metric` of `model` on a test split written by preprocess (encoded by `encoded_by`): the rows are
    decoded to raw values first, so a model with its own, older preprocessing (scaler, categories, labels)
    is scored on the very same rows, its predictions read in `encoded_by`'s labels."""
    frame = pd.concat([tables.read(f) for f in tables.list_files(test_dir, what="test")], ignore_index=True)
    target = encoded_by.schema.target
    frame = frame[np.isfinite(frame[target].to_numpy("float64"))]  # a label the train split never had
    task = encoded_by.schema.task
    predicted = model.predict(raw_features(frame, encoded_by), scaled=False)
    predicted = in_labels(predicted, model.labels, encoded_by.labels, task)
    actual = frame[target].to_numpy("float64")
    return float(metrics.point_metric(task, metric, actual, predicted))


def raw_features(frame: pd.DataFrame, encoded_by: transform.Transform) -> pd.DataFrame:
    """The raw features of rows `encoded_by` encoded: numbers unscaled, category codes as their text."""
    schema = encoded_by.schema
    raw = pd.DataFrame(index=frame.index)
    numeric = [n for n in schema.feature_names if n not in schema.categorical]
    if numeric:
        raw[numeric] = encoded_by.invert_matrix(frame[numeric].to_numpy("float64"), numeric)
    for name in schema.categorical:
        names = np.array([*encoded_by.categories[name], None], dtype=object)  # NaN (missing): the last
        codes = frame[name].to_numpy("float64")
        raw[name] = names[np.where(np.isfinite(codes), codes, len(names) - 1).astype("int64")]
    return raw[schema.feature_names]


def in_labels(
    predicted: np.ndarray, labels: tuple[str, ...], wanted: tuple[str, ...], task: Task
) -> np.ndarray:
    """A classifier's predictions over its `labels` (binary: the positive one's probability; multiclass:
    a column per label) as predictions over `wanted`: a label the model does not know has probability 0.
    A regression's numbers (no labels) as they are."""
    if labels == wanted:
        return predicted
    binary = task is Task.BINARY
    matrix = np.column_stack([1 - predicted, predicted]) if binary else predicted
    column = {label: i for i, label in enumerate(labels)}
    none = np.zeros(len(matrix))
    out = np.column_stack([matrix[:, column[label]] if label in column else none for label in wanted])
    return out[:, -1] if binary else out


class Scheduler:
    def __init__(
        self,
        home: Path,
        schedule: Schedule,
        input_file: Path,
        max_runs: int = 0,
        run_now: bool = False,
        gate: str = workflow.GATE.default,
    ) -> None:
        self.home = home
        self.schedule = schedule
        self.input_file = input_file
        self.gate = gate
        self.max_runs = max_runs
        self.run_now = run_now
        self.stop = threading.Event()
        self.in_run = False
        self.in_deploy = False
        self.anchor = datetime.now(UTC)

    def run(self) -> int:
        read_input(
            self.input_file, self.gate
        )  # a broken input (or MLflow URL) fails now, not at the first fire time
        tracking.server_uri()
        with self._only_scheduler(), self._signals():
            runs = 0
            self.anchor = datetime.now(UTC)
            due = self.anchor if self.run_now else self._next(self.anchor)
            while due is not None and not self.stop.is_set():
                print(
                    f"smray schedule: next run at {due:%Y-%m-%d %H:%M:%S} UTC ({self.schedule.expression})",
                    flush=True,
                )
                if self.stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                    break
                self._remember(self._one_run())
                runs += 1
                if self.max_runs and runs >= self.max_runs:
                    break
                now = datetime.now(UTC)
                following = self._next(now)
                missed = self._missed(due, now)
                if missed:
                    print(
                        f"smray schedule: skipped {missed} fire time(s) that came while the run was going",
                        flush=True,
                    )
                due = following
            print(f"smray schedule: stopped after {runs} run(s)", flush=True)
        return 0

    def _next(self, now: datetime) -> datetime | None:
        """A rate counts from the scheduler's start, as an EventBridge rate counts from the rule's."""
        if isinstance(self.schedule, Rate):
            periods = int((now - self.anchor).total_seconds() // self.schedule.seconds) + 1
            return self.anchor + timedelta(seconds=periods * self.schedule.seconds)
        return self.schedule.next_after(now)

    def _missed(self, due: datetime, now: datetime) -> int:
        count, moment = 0, self.schedule.next_after(due)
        while moment is not None and moment <= now and count < 10_000:
            count, moment = count + 1, self.schedule.next_after(moment)
        return count

    def _one_run(self) -> Record:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        endpoints = LocalEndpoints(self.home)
        source, settings = read_input(self.input_file, self.gate)
        record = Record(started, "", "", "Error", "", None, "", None, "", "", settings.rule.metric)
        self.in_run = True
        try:
            with locks.writing_home(self.home, "smray schedule run"):  # what is served is read under it too
                served = self._served(endpoints, settings.endpoint_name)
                record.served_before = record.served_after = _name(served)
                input_dir = flow.stage_input(self.home, source)
                result = flow.run_pipeline(self.home, input_dir, settings)
                record.execution, record.status = result.execution.id, result.execution.status
                record.decision = self._decide(result, served, settings, input_dir, record)
                record.served_after = _name(self._served(endpoints, settings.endpoint_name))
                result.schedule = record.decision
                flow.finish(result, "smray schedule")
        except KeyboardInterrupt:
            record.status, record.decision = (
                "Abandoned",
                "abandoned by a second stop signal: endpoint unchanged",
            )
        except Exception as exc:
            if not errors.expected(exc):  # a defect: recorded like any run, then it stops the scheduler
                record.decision = f"run failed unexpectedly: {type(exc).__name__}: {exc}"
                record.finished = datetime.now(UTC).isoformat(timespec="seconds")
                self._remember(record)
                raise
            record.decision = f"run failed: {errors.one_line(exc)}"  # input, Docker or AWS: the next may pass
        finally:
            self.in_run = False
            record.finished = datetime.now(UTC).isoformat(timespec="seconds")
        print(f"smray schedule: {record.decision}", flush=True)
        return record

    def _remember(self, record: Record) -> None:
        jsonl.append(self.home / HISTORY, asdict(record))

    def _decide(
        self,
        result: flow.Result,
        served: ModelVersion | None,
        settings: flow.Settings,
        input_dir: Path,
        record: Record,
    ) -> str:
        new, candidate = result.version, result.model
        if new is None or candidate is None:
            return f"not deployed: {result.gate.verdict}"
        record.new_version = _name(new)
        rule = result.gate.rule
        record.metric, name = rule.metric, workflow.label(rule.metric)
        test_dir = result.execution.folder / "test"
        record.new_score = score_on_test(test_dir, candidate.transform, candidate, rule.metric)
        before = ""
        if served is not None:
            old = model_artifact.load(Path(served.artifact))
            if old.task is not candidate.task:  # the table's task changed: no common metric
                before = f" (served {_name(served)}: a {old.task.value} model, not compared)"
            else:
                record.served_score = score_on_test(test_dir, candidate.transform, old, rule.metric)
                shown = numbers.significant(record.served_score)
                if _worse(record.new_score, record.served_score, rule.higher_is_better):
                    reason = (
                        f"worse than the served {_name(served)} on this run's test set: {name} "
                        f"{numbers.significant(record.new_score)} {'<' if rule.higher_is_better else '>'} "
                        f"{shown}"
                    )
                    flow.decide(self.home, result, Approval.REJECTED, reason)
                    return f"not deployed: {_name(new)} is {reason}"
                before = f" (served {_name(served)}: {name} {shown})"
        self.in_deploy = True  # a stop signal now waits for the swap to complete
        try:
            flow.deploy_approve_and_invoke(
                self.home,
                settings.endpoint_name,
                result,
                input_dir,
                "passed the gate, not worse than the served model",
            )
        finally:
            self.in_deploy = False
        return f"deployed {_name(new)} ({name} {numbers.significant(record.new_score)}){before}"

    def _served(self, endpoints: LocalEndpoints, name: str) -> ModelVersion | None:
        endpoint = endpoints.describe(name)
        if endpoint is None:
            return None
        return LocalRegistry(self.home / "registry").describe(endpoint.group, endpoint.version)

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.in_run or not self.stop.is_set():
            if self.in_run:
                print("\nsmray schedule: stopping after this run (signal again to abandon it)", flush=True)
            self.stop.set()
            return
        if self.in_deploy:
            print("\nsmray schedule: the endpoint swap completes first", flush=True)
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def _only_scheduler(self) -> Iterator[None]:
        def refuse() -> None:
            raise UserError(f"another smray schedule is running on {self.home}")

        with exclusive(self.home / "schedule.lock", on_wait=refuse):
            yield


def _name(version: ModelVersion | None) -> str:
    return f"{version.group}/{version.version}" if version else ""


def _worse(new: float, served: float, higher_is_better: bool) -> bool:
    return new < served if higher_is_better else new > served


def history(home: Path) -> list[dict[str, Any]]:
    """Every scheduled run's record, oldest first."""
    return jsonl.read(home / HISTORY, lambda raw: asdict(validation.record(Record, _current(raw))))


def _current(raw: dict[str, Any]) -> dict[str, Any]:
    """A record as this version writes it: one written when the gate was always on RMSE, renamed."""
    if "new_rmse" not in raw or "metric" in raw:
        return raw
    renamed = {"new_rmse": "new_score", "served_rmse": "served_score"}
    return {renamed.get(k, k): v for k, v in raw.items()} | {"metric": "rmse"}
