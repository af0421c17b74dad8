"""Training per task: the objective, the metrics logged, the tuning objective and its direction
(smray.contracts.train, smray.hyperparameters) and early stopping in that direction."""

import re

import pytest

from smray import hyperparameters
from smray.contracts import train as contract
from smray.entrypoints.training.checkpoint import EarlyStop, Saved
from smray.errors import UserError
from smray.schema import Task


def test_each_task_s_tuning_objective_and_its_direction():
    assert contract.objective(Task.REGRESSION) == ("validation:rmse", "Minimize")
    assert contract.objective(Task.BINARY) == ("validation:auc", "Maximize")
    assert contract.objective(Task.MULTICLASS) == ("validation:mlogloss", "Minimize")


def test_metric_definitions_per_task_and_the_regression_default():
    names = [d["Name"] for d in contract.metric_definitions()]
    assert names == ["train:rmse", "train:mae", "validation:rmse", "validation:mae"]
    assert contract.metric_definitions(Task.REGRESSION) == contract.metric_definitions()
    binary = [d["Name"] for d in contract.metric_definitions(Task.BINARY)]
    assert binary == [f"{s}:{m}" for s in ("train", "validation") for m in ("auc", "logloss", "error")]
    for task in Task:  # the tuner's objective is one of the job's metric definitions
        assert contract.objective(task)[0] in [d["Name"] for d in contract.metric_definitions(task)]


def test_metric_regexes_tell_apart_metrics_whose_names_end_alike():
    line = "[7]#011train-merror:0.25#011validation-mlogloss:0.61#011validation-merror:0.3"
    found = {
        d["Name"]: m.group(1)
        for task in Task
        for d in contract.metric_definitions(task)
        if (m := re.match(d["Regex"], line))
    }
    assert found == {"train:merror": "0.25", "validation:mlogloss": "0.61", "validation:merror": "0.3"}


@pytest.mark.parametrize(
    ("task", "objective", "metric"),
    [
        (Task.REGRESSION, "reg:squarederror", "rmse"),
        (Task.BINARY, "binary:logistic", "auc"),
        (Task.MULTICLASS, "multi:softprob", "mlogloss"),
    ],
)
def test_auto_is_the_task_s_objective_and_metric(task, objective, metric):
    values = hyperparameters.for_task(hyperparameters.resolve({}), task, classes=4)
    assert (values["objective"], values["eval_metric"]) == (objective, metric)
    params = hyperparameters.xgboost_params(values)
    assert params["eval_metric"] == list(contract.METRICS[task])  # every metric of the task in the log
    assert params.get("num_class") == (4 if task is Task.MULTICLASS else None)


def test_a_given_objective_or_metric_is_kept_where_it_fits_the_task():
    given = hyperparameters.resolve({"objective": "reg:absoluteerror", "eval_metric": "mae"})
    values = hyperparameters.for_task(given, Task.REGRESSION)
    assert (values["objective"], values["eval_metric"]) == ("reg:absoluteerror", "mae")
    binary = hyperparameters.for_task(hyperparameters.resolve({"eval_metric": "logloss"}), Task.BINARY)
    assert binary["eval_metric"] == "logloss"


@pytest.mark.parametrize(
    ("given", "task", "message"),
    [
        ({"eval_metric": "rmse"}, Task.BINARY, "eval_metric=rmse does not fit a binary task: use auc or "),
        ({"eval_metric": "auc"}, Task.MULTICLASS, "eval_metric=auc does not fit a multiclass task"),
        ({"objective": "binary:logistic"}, Task.REGRESSION, "objective=binary:logistic does not fit a regr"),
        ({"objective": "reg:squarederror"}, Task.MULTICLASS, "use multi:softprob$"),
    ],
)
def test_an_objective_or_metric_of_another_task_is_a_one_line_error(given, task, message):
    with pytest.raises(UserError, match=message):
        hyperparameters.for_task(hyperparameters.resolve(given), task, classes=3)


def test_num_class_is_the_data_s_never_a_user_s():
    with pytest.raises(UserError, match="unknown hyper-parameter"):
        hyperparameters.resolve({"num_class": "3"})


class _Model:
    def __init__(self) -> None:
        self.attrs: dict[str, str] = {}

    def set_attr(self, **attrs: str) -> None:
        self.attrs.update(attrs)


def _stop_round(scores: list[float], maximize: bool, patience: int = 2, resumed: Saved | None = None) -> int:
    stop, model, log = EarlyStop(patience, "validation", "m", resumed, maximize), _Model(), []
    for epoch, score in enumerate(scores):
        log.append(score)
        if stop.after_iteration(model, epoch, {"validation": {"m": log}}):
            break
    stop.after_training(model)
    return int(model.attrs["best_iteration"])


def test_early_stopping_keeps_the_best_round_in_the_metric_s_direction():
    scores = [0.70, 0.80, 0.75, 0.72, 0.71]
    assert _stop_round(scores, maximize=True) == 1  # an AUC: the highest
    assert _stop_round(scores, maximize=False) == 0  # a loss: the lowest
    resumed = Saved(bytearray(), 2, {"validation": {"m": [0.6, 0.9]}})
    assert _stop_round([0.8, 0.85, 0.7], maximize=True, resumed=resumed) == 1  # before the resume
