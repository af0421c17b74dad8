"""Fixtures shared by the unit tests of commands."""

import subprocess

import pytest

from smray.workstation import local_workflow as flow
from smray.workstation.endpoints import local as local_endpoints


@pytest.fixture
def nothing_starts(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("something started: a job, a container or a process")

    for name in ("stage_input", "run_pipeline", "require_image", "deploy_approve_and_invoke"):
        monkeypatch.setattr(flow, name, started)
    monkeypatch.setattr(local_endpoints, "_docker", started)
    for name in ("run", "Popen"):  # docker compose, build.sh, any other process
        monkeypatch.setattr(subprocess, name, started)
