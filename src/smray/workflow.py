"""The workflow's parameters, described once. Each has one name, the one the SageMaker Pipeline, the Step
Functions execution input and the local scheduler's input use, and one default; `smray run local` sets it
with the option `--<field>` (its Settings field, smray.workstation.local_workflow.Settings). The pipeline,
the local run, the scheduler and the state machine take their names and defaults from here
(tests/unit/test_workflow_parameters.py checks every surface against it).

The rounds and trials default to the image's own hyper-parameter defaults (smray.hyperparameters), which is
what a training job without them uses: the retraining state machine passes neither."""

from __future__ import annotations

from dataclasses import dataclass

from smray import hyperparameters


@dataclass(frozen=True)
class Parameter:
    name: str
    field: str
    default: int | float
    meaning: str

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")


PARAMETERS = (
    Parameter("ProcessingInstanceCount", "processing_hosts", 2, "hosts of ingest and preprocess"),
    Parameter("TrainingInstanceCount", "training_hosts", 1, "hosts of the training job"),
    Parameter("Threshold", "threshold", 15000.0, "the gate: the highest test RMSE that registers the model"),
    Parameter(
        "TuningTrials", "tuning_trials", hyperparameters.BY_NAME["tune_trials"].default, "tuning trials"
    ),
    Parameter("NumRound", "num_round", hyperparameters.BY_NAME["num_round"].default, "boosting rounds"),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def default(name: str) -> int | float:
    return BY_NAME[name].default
