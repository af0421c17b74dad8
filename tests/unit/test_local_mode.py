"""SageMaker local mode set-up: telemetry really opted out, and step progress as a person sees it."""

import io
import logging

from smray.pipeline import local_mode
from smray.pipeline.progress import StepProgress


def test_telemetry_is_opted_out_in_the_sdk_s_own_config(tmp_path, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_USER_CONFIG_OVERRIDE", raising=False)
    local_mode.prepare_environment(tmp_path)
    from sagemaker.telemetry.telemetry_logging import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    session = local_mode.session()
    assert resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, False, session) is True
    assert session.config["local"]["container_config"]["shm_size"] == "256m"


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("sagemaker.local.entities", logging.INFO, "", 0, message, (), None)


def test_progress_shows_each_step_once_and_a_fail_step_as_failed():
    out = io.StringIO()
    progress = StepProgress(out, total=3)
    for message in (
        "Starting pipeline step: 'EvaluateModel'",
        "Pipeline step 'EvaluateModel' SUCCEEDED.",
        "Starting pipeline step: 'RMSEFail'",
        "Pipeline step 'RMSEFail' SUCCEEDED.",
        "Pipeline step 'RMSEFail' FAILED. Failure message is: test RMSE 9000 is above the RMSEThreshold 1",
    ):
        progress.emit(_record(message))
    progress.flush_pending()
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "[1/3] EvaluateModel ...",
        "      EvaluateModel succeeded in 0 s",
        "[2/3] RMSEFail ...",
        "      RMSEFail failed in 0 s",
    ]
