"""The workflow's parameters, described once. Each has one name, the one the SageMaker Pipeline, the Step
Functions execution input and the local scheduler's input use, and one default; `smray run local` sets it
with the option `--<field>` (its Settings field, smray.workstation.local_workflow.Settings). The pipeline,
the local run, the scheduler and the state machine take their names and defaults from here
(tests/unit/test_workflow_parameters.py checks every surface against it).

The rounds and trials default to the image's own hyper-parameter defaults (smray.hyperparameters), which is
what a training job without them uses.

The gate (smray.gate) is `GATE`, a metric of evaluation.json and its direction (`accuracy >= 0.9`), and the
parameter Threshold, its number. The metric and direction are fixed when a pipeline is defined (they make
its condition); the threshold may change at each execution. Threshold's default is the gate's own number:
the task's default gate's (`rmse <= 15000` for a regression table such as the built-in housing one), or
the one `--gate` names. `gate_rule` resolves the two for every surface."""

from __future__ import annotations

from dataclasses import dataclass

from smray import gate, hyperparameters
from smray.errors import UserError
from smray.schema import Task


@dataclass(frozen=True)
class Parameter:
    name: str
    field: str
    default: int | float | str
    meaning: str
    hyperparameter: str = ""  # the training job's hyper-parameter it sets, if it is one

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")


def _training(name: str, field: str, hyperparameter: str, meaning: str) -> Parameter:
    """A parameter that is the training job's hyper-parameter, with the image's own default."""
    return Parameter(name, field, hyperparameters.BY_NAME[hyperparameter].default, meaning, hyperparameter)


PARAMETERS = (
    Parameter("ProcessingInstanceCount", "processing_hosts", 2, "hosts of ingest and preprocess"),
    Parameter("TrainingInstanceCount", "training_hosts", 1, "hosts of the training job"),
    Parameter(
        "Threshold",
        "threshold",
        gate.default(Task.REGRESSION).threshold,  # the built-in housing table's default gate
        "the gate's threshold (default: the gate's own)",
    ),
    _training("TuningTrials", "tuning_trials", "tune_trials", "tuning trials"),
    _training("NumRound", "num_round", "num_round", "boosting rounds"),
)
BY_NAME = {p.name: p for p in PARAMETERS}
# Not a pipeline parameter: the gate's metric and direction are part of the pipeline's definition.
GATE = Parameter("Gate", "gate", "", "the gate, '<metric> >= <number>' (default: the task's, smray.gate)")
# How the summary, the Fail step and the scheduler name a metric of evaluation.json.
LABELS = {
    "rmse": "RMSE",
    "mae": "MAE",
    "mape": "MAPE",
    "r2": "R²",
    "auc": "AUC",
    "f1": "F1",
    "weighted_f1": "weighted F1",
    "weighted_precision": "weighted precision",
    "weighted_recall": "weighted recall",
}


def default(name: str) -> int | float | str:
    return BY_NAME[name].default


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def gate_rule(task: Task, expression: str, threshold: float | None = None) -> gate.GateRule:
    """The run's gate: `expression` (default: the task's default gate), its number replaced by `threshold`
    where one is given (as an execution's Threshold replaces the definition's default). The threshold is
    the caller's to check (a number above 0, as every threshold is)."""
    rule = gate.parse(expression, task) if expression else gate.default(task)
    return rule if threshold is None else gate.GateRule(task, rule.metric, threshold)


def refuse_two_thresholds(task: Task, expression: str, threshold: object, names: tuple[str, str]) -> None:
    """A gate expression and a threshold given together (on one command line) that name different
    numbers contradict each other. `names`: what the user calls the gate and the threshold."""
    if expression and threshold is not None and threshold != gate.parse(expression, task).threshold:
        raise UserError(
            f"{names[1]} {threshold!r} contradicts {names[0]} {expression!r}: give the threshold once"
        )
