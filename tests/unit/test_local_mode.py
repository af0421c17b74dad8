"""SageMaker local mode set-up: telemetry really opted out, the SDK's config validated once a run, and
step progress as a person sees it."""

import io
import logging
import os
from pathlib import Path

import jsonschema
import pytest

from smray.workstation.pipeline import local_mode
from smray.workstation.pipeline.progress import ContainerOutput, StepProgress


def test_telemetry_is_opted_out_in_the_sdk_s_own_config(tmp_path, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_USER_CONFIG_OVERRIDE", raising=False)
    local_mode.prepare_environment(tmp_path)
    from sagemaker.telemetry.telemetry_logging import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    session = local_mode.session("1024m")
    assert resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, False, session) is True
    assert session.config["local"]["container_config"]["shm_size"] == "1024m"


def test_a_run_validates_the_sdk_s_config_once_and_a_bad_one_still_fails(tmp_path, monkeypatch):
    """Each lookup of a setting validated the config, schema included (57 ms; 10 s a run)."""
    monkeypatch.delenv("SAGEMAKER_USER_CONFIG_OVERRIDE", raising=False)
    local_mode.prepare_environment(tmp_path)
    from sagemaker.telemetry.telemetry_logging import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    validations = []  # of the SDK's config (local mode's own settings are another, cheap schema)
    original = jsonschema.validate

    def validate(instance, *args, **kwargs):
        validations.append("SchemaVersion" in instance)
        return original(instance, *args, **kwargs)

    monkeypatch.setattr(jsonschema, "validate", validate)
    with local_mode.config_validated_once():
        session = local_mode.session("1024m")
        before = sum(validations)
        for _ in range(5):
            assert resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, False, session) is True
        assert sum(validations) == before == 1
        session.sagemaker_config = {"SchemaVersion": "1.0", "SageMaker": {"Nonsense": 1}}
        with pytest.raises(jsonschema.ValidationError):
            resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, False, session)
    resolve_value_from_config(None, "SageMaker.Pipeline.RoleArn", None, local_mode.session("1024m"))
    assert sum(validations) > before + 1, "outside a run, the SDK validates as it always did"


def test_a_job_s_hosts_share_ray_s_default_object_store_share_of_the_machine():
    memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    one, two = (int(local_mode.shm_size(hosts).removesuffix("m")) for hosts in (1, 2))
    assert one == max(int(memory_mib * 0.3), 256)
    assert two in (one // 2, one // 2 - 1) or two == 256


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("sagemaker.local.entities", logging.INFO, "", 0, message, (), None)


def test_progress_shows_each_step_once_and_a_fail_step_as_failed():
    out = io.StringIO()
    progress = StepProgress(out, total=3)
    for message in (
        "Starting pipeline step: 'EvaluateModel'",
        "Pipeline step 'EvaluateModel' SUCCEEDED.",
        "Starting pipeline step: 'GateFail'",
        "Pipeline step 'GateFail' SUCCEEDED.",
        "Pipeline step 'GateFail' FAILED. Failure message is: test RMSE 9000 is above the Threshold 1",
    ):
        progress.emit(_record(message))
    progress.flush_pending()
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "[1/3] EvaluateModel ...",
        "      EvaluateModel succeeded in 0 s",
        "[2/3] GateFail ...",
        "      GateFail failed in 0 s",
    ]


def test_a_failed_job_s_reason_is_kept_from_its_coloured_output_even_when_written_in_pieces():
    log = io.StringIO()
    output = ContainerOutput(log)
    line = (
        "\x1b[33mgun8-algo-1-ks3ij |\x1b[0m 2026-11-23 02:02:23,756 ERROR smray: FAILED: feature group "
        "housing has no live records as of 2026-11-23T02:01:21Z\n"
    )
    output.write("\x1b[36malgo-2 |\x1b[0m 2026-11-23 02:02:24,123 ERROR smray.lifeline: broke\n")
    for piece in (line[:40], line[40:90], line[90:]):
        output.write(piece)
    assert output.last_failure == "feature group housing has no live records as of 2026-11-23T02:01:21Z"
    assert log.getvalue().endswith(line)


def test_the_default_home_is_one_local_mode_mounts_for_root_and_for_users(monkeypatch):
    from sagemaker.local.data import LocalFileDataSource

    from smray import paths

    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert paths.home() == Path("/home/someone/.smray")
    local_mode.require_mountable(paths.home())
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert paths.home() == paths.ROOT_HOME
    local_mode.require_mountable(paths.home())
    LocalFileDataSource(str(paths.ROOT_HOME.parent))  # the SDK's own check (the home itself is the user's)


def test_a_home_that_local_mode_refuses_is_named_before_any_job(tmp_path):
    import pytest

    from smray.errors import UserError

    with pytest.raises(UserError, match=r"SMRAY_HOME /root/\.smray is under /root, which SageMaker local"):
        local_mode.require_mountable(Path("/root/.smray"))
    local_mode.require_mountable(tmp_path)  # /tmp is fine


def test_a_job_s_containers_are_removed_when_the_run_is_interrupted_mid_job(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while a job runs: its containers are removed, found by the compose label, as
    after a job that ended. Docker is faked: tests/container/test_pipeline_local.py checks a real run
    leaves no container."""
    import subprocess
    from types import SimpleNamespace

    from sagemaker.local import image

    commands = []

    def run(command, **kwargs):
        commands.append(command)
        listed = "c1\nc2\n" if command[:2] == ["docker", "ps"] else ""
        return subprocess.CompletedProcess(command, 0, listed, "")

    monkeypatch.setattr(local_mode.subprocess, "run", run)
    monkeypatch.setattr(image._SageMakerContainer, "_compose", lambda self, detached=False: ["compose", "up"])
    ended, running = (
        SimpleNamespace(container_root=str(tmp_path / n), hosts=[]) for n in ("ended", "running")
    )
    with pytest.raises(KeyboardInterrupt), local_mode.job_containers_removed():
        for job in (ended, running):
            image._SageMakerContainer._compose(job)  # the job's `docker compose up` starts
        image._SageMakerContainer._cleanup(ended)  # the first job ended: local mode cleaned it up
        commands.clear()
        raise KeyboardInterrupt
    label = f"label=com.docker.compose.project.config_files={tmp_path / 'running' / 'docker-compose.yaml'}"
    assert commands == [
        ["docker", "ps", "--all", "--quiet", "--filter", label],
        ["docker", "rm", "--force", "c1", "c2"],
    ]
