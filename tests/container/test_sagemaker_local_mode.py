"""SageMaker local mode is a way to run the smray image directly from the SageMaker Python SDK, with no
AWS account: a 2-host `Processor` and a 2-host `Estimator` (its artifacts to a file:// output path) on a
`LocalSession`, each running the image's `cluster-check` mode. Each job completes, its log shows one Ray
cluster that every one of its hosts answered, and no job container of this test is left behind, running
or exited."""

import re
import subprocess
import tarfile
from pathlib import Path
from unittest import mock

import pytest
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.processing import Processor

from smray.workstation.local_cluster import new_token
from smray.workstation.pipeline import local_mode
from smray.workstation.pipeline.definition import ENTRYPOINT

from .conftest import IMAGE

HOSTS = 2
MODE = "cluster-check"
ROLE = "arn:aws:iam::000000000000:role/smray-local"  # local mode never assumes it
COMPOSE_FILES = "com.docker.compose.project.config_files"  # the label of every local-mode job container


def _job_containers(root: Path) -> list[str]:
    """The containers, running or exited, of the local-mode jobs whose files are under `root`: this
    test's own, never a user's."""
    fmt = f'{{{{.Names}}}} {{{{.Label "{COMPOSE_FILES}"}}}}'
    listed = subprocess.run(
        ["docker", "ps", "--all", "--filter", f"label={COMPOSE_FILES}", "--format", fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = (line.partition(" ") for line in listed.stdout.splitlines())
    return [name for name, _, files in lines if files.startswith(f"{root}/")]


@pytest.fixture
def local_session(docker_client, tmp_path):
    """A LocalSession as a user makes one, set up the way smray's own local runs are (region, telemetry
    off, a /dev/shm per host); its jobs' folders under tmp_path, their containers removed after each job.
    The process environment is restored afterwards."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    assert _job_containers(jobs) == []
    with mock.patch.dict("os.environ"), local_mode.config_validated_once():
        local_mode.prepare_environment(tmp_path / "home")
        session = LocalSession()
        session.config = {
            "local": {
                "container_root": str(jobs),
                "container_config": {"shm_size": local_mode.shm_size(HOSTS)},
            }
        }
        with local_mode.job_containers_removed():
            yield session
    assert _job_containers(jobs) == [], "local mode left job containers behind"


def _assert_cluster_formed(log: str, hosts: int) -> None:
    """Every host of the job answered the head's task once: local mode's host names, one job suffix."""
    answered = sorted(re.findall(r"cluster-check: task ran on (algo-\d+-\w{5}) \(", log))
    assert len(answered) == hosts, log[-5000:]
    assert answered == [f"algo-{i}-{answered[0][-5:]}" for i in range(1, hosts + 1)], answered
    assert f"cluster-check: OK, {hosts}/{hosts} hosts answered" in log, log[-5000:]
    assert f"mode {MODE} succeeded" in log


@pytest.mark.timeout(300)
def test_a_processor_in_local_mode_forms_a_cluster_of_its_hosts(local_session, capsys):
    processor = Processor(
        role=ROLE,
        image_uri=IMAGE,
        instance_count=HOSTS,
        instance_type="local",
        entrypoint=[*ENTRYPOINT, MODE],  # as the pipeline's processing steps pick their mode
        base_job_name=f"smray-{MODE}",
        env=new_token(),
        sagemaker_session=local_session,
    )
    # No ProcessingOutput: cluster-check writes none, and a Processor run outside a pipeline rewrites any
    # destination that is not s3:// to the session's default bucket, which asks AWS for the account
    processor.run(wait=True, logs=True)

    job = processor.jobs[-1].describe()
    assert job["ProcessingJobStatus"] == "Completed", job
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == HOSTS
    _assert_cluster_formed(capsys.readouterr().out, HOSTS)


@pytest.mark.timeout(300)
def test_an_estimator_in_local_mode_forms_a_cluster_of_its_hosts(local_session, tmp_path, capsys):
    output_path = tmp_path / "training-output"
    estimator = Estimator(
        image_uri=IMAGE,
        role=ROLE,
        instance_count=HOSTS,
        instance_type="local",
        # A training job runs the image's ENTRYPOINT with `train`: an entry point of its own picks the mode
        container_entry_point=[*ENTRYPOINT, MODE],
        output_path=output_path.as_uri(),
        environment=new_token(),
        sagemaker_session=local_session,
    )
    estimator.fit(wait=True, logs="All")

    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job
    assert job["ResourceConfig"]["InstanceCount"] == HOSTS
    # Local mode collects every host's /opt/ml/model and /opt/ml/output into output_path itself (on AWS,
    # under the job's name)
    assert estimator.model_data == (output_path / "model.tar.gz").as_uri()
    assert (output_path / "model.tar.gz").is_file()
    with tarfile.open(output_path / "output.tar.gz") as outputs:
        assert not [n for n in outputs.getnames() if Path(n).name == "failure"]  # no failure reported
    _assert_cluster_formed(capsys.readouterr().out, HOSTS)
