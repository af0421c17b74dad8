"""Running the pipeline in SageMaker local mode (LocalPipelineSession) on the local Docker engine, with
no AWS account: file:// locations everywhere, telemetry off, one folder per execution.

Two gaps of local mode are filled here rather than worked around in the pipeline:
- its JsonGet reads a PropertyFile only from S3 (file:// fails in `parse_s3_url`, and the error blames the
  JSON path), so the quality gate could never see evaluation.json. `file_property_files()` swaps in an
  executor that reads a property file from a file:// output and defers to the SDK for everything else;
- it leaves every job's containers behind, exited (one per host and step: 11 a run of the main command),
  and running where the run is interrupted mid-job. `job_containers_removed()` removes each job's own
  once its outputs are collected (their output is in the run's log), or when the run is interrupted.
And one cost of the SDK: it validates its config at every lookup of a setting, and each validation first
checks the whole config schema against JSON Schema's own (57 ms). A run looks settings up about 180 times:
10 s, most of it before the first step. `config_validated_once()` validates each config once a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from smray.errors import UserError
from smray.ray_bootstrap import object_store

TELEMETRY_OPT_OUT = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def prepare_environment(home: Path) -> None:
    """What local mode needs to run with no account: a region, no EC2 metadata lookups, no telemetry;
    and a home it agrees to mount."""
    require_mountable(home)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    config = home / "sagemaker-config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(TELEMETRY_OPT_OUT)
    os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(config)


def require_mountable(home: Path) -> None:
    """Local mode refuses to mount folders under /root, /etc, /var/lib, ~/.config and a few more; say so
    before any job starts, naming the setting to change."""
    from sagemaker.utils import _SENSITIVE_SYSTEM_PATHS as refused

    resolved = str(home.resolve())
    for prefix in refused:
        if resolved == prefix or resolved.startswith(prefix.rstrip("/") + "/"):
            raise UserError(
                f"SMRAY_HOME {home} is under {prefix}, which SageMaker local mode refuses to mount: "
                "set SMRAY_HOME to a folder elsewhere"
            )


MIN_SHM_MIB = 256


def shm_size(hosts: int) -> str:
    """Each job container's /dev/shm, where its host's Ray object store lives. A job's hosts share this
    machine, so together they get Ray's default share of its memory (tmpfs takes only what is used).
    Docker gives 64 MB; with a fixed 256 MB, Ray Data wrote one block at a time at 10M rows
    (preprocess 146 s; 55 s with 3 GB)."""
    share = object_store.physical_memory_bytes() * object_store.MEMORY_FRACTION / max(hosts, 1)
    return f"{max(int(share) // object_store.MIB, MIN_SHM_MIB)}m"


def session(shm_size: str) -> Any:
    from sagemaker.workflow.pipeline_context import LocalPipelineSession

    local = LocalPipelineSession()
    # The setting applies to every container of a job
    local.config = {"local": {"local_code": True, "container_config": {"shm_size": shm_size}}}
    return local


@contextlib.contextmanager
def file_property_files() -> Iterator[None]:
    import sagemaker.local.pipeline as sdk
    from sagemaker.local.utils import get_using_dot_notation
    from sagemaker.workflow.functions import JsonGet

    class Executor(sdk.LocalPipelineExecutor):
        def _evaluate_json_get_function(self, pipeline_variable: Any, step_name: str) -> Any:
            path = self._local_property_file(pipeline_variable)
            if path is None:
                return super()._evaluate_json_get_function(pipeline_variable, step_name)
            try:
                return get_using_dot_notation(json.loads(path.read_text()), pipeline_variable.json_path)
            except (OSError, json.JSONDecodeError, ValueError) as exc:
                self.execution.update_step_failure(
                    step_name, f"cannot read {pipeline_variable.json_path} from {path}: {exc}"
                )
                return None

        def _local_property_file(self, variable: Any) -> Path | None:
            if not isinstance(variable, JsonGet) or variable.property_file is None:
                return None
            step = self.execution.step_execution.get(variable.step_name)
            outputs = (step.properties or {}).get("ProcessingOutputConfig", {}).get("Outputs", {})
            name = variable.property_file
            file = (
                next(
                    f for f in self.pipeline_dag.step_map[variable.step_name].property_files if f.name == name
                )
                if isinstance(name, str)
                else name
            )
            uri = outputs.get(file.output_name, {}).get("S3Output", {}).get("S3Uri", "")
            if not uri.startswith("file://"):
                return None
            parsed = urlparse(uri)
            return Path(parsed.netloc + parsed.path) / file.path

    original = sdk.LocalPipelineExecutor
    sdk.LocalPipelineExecutor = Executor  # looked up by name when an execution starts
    try:
        yield
    finally:
        sdk.LocalPipelineExecutor = original


@contextlib.contextmanager
def config_validated_once() -> Iterator[None]:
    import importlib

    from sagemaker.config import config

    original = config.validate_sagemaker_config
    validated: set[str] = set()

    def validate_once(sagemaker_config: dict | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in validated:
            original(sagemaker_config)  # raises on a bad config, as before
            validated.add(key)

    modules = [  # each of them imported the function by name
        importlib.import_module(name)
        for name in (
            "sagemaker.config.config",
            "sagemaker.config",
            "sagemaker.utils",
            "sagemaker.session",
            "sagemaker.local.local_session",
        )
    ]
    for module in modules:
        module.validate_sagemaker_config = validate_once
    try:
        yield
    finally:
        for module in modules:
            module.validate_sagemaker_config = original


def _remove_job_containers(compose_file: str) -> None:
    """Removes every container, running or exited, of the local-mode job whose compose file this is."""
    label = f"label=com.docker.compose.project.config_files={compose_file}"
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", label], capture_output=True, text=True
    )
    if ids := listed.stdout.split():
        subprocess.run(["docker", "rm", "--force", *ids], capture_output=True)


@contextlib.contextmanager
def job_containers_removed() -> Iterator[None]:
    from sagemaker.local import image

    started: set[str] = set()  # the compose files of the jobs started and not yet cleaned up

    def compose_file(container: Any) -> str:
        return os.path.join(container.container_root, image.DOCKER_COMPOSE_FILENAME)

    def compose(container: Any, detached: bool = False) -> list[str]:
        started.add(compose_file(container))
        return original_compose(container, detached)

    def cleanup(container: Any, dirs_to_delete: list[str] | None = None) -> None:
        _remove_job_containers(compose_file(container))
        started.discard(compose_file(container))
        original_cleanup(container, dirs_to_delete)

    original_compose = image._SageMakerContainer._compose  # the command that starts a job
    original_cleanup = image._SageMakerContainer._cleanup  # called after a job's outputs are collected
    image._SageMakerContainer._compose = compose
    image._SageMakerContainer._cleanup = cleanup
    try:
        yield
    except BaseException:  # Ctrl-C or SIGTERM mid-job (local mode's clean-up may not run then), or a failure
        for file in started:
            _remove_job_containers(file)
        raise
    finally:
        image._SageMakerContainer._compose = original_compose
        image._SageMakerContainer._cleanup = original_cleanup
