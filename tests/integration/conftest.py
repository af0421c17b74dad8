"""The integration tier's fixtures: a private single-host Ray instance, a small real model and a running
`serve` process."""

from pathlib import Path

import pytest

from tests.support.models import build_model, free_port, start_serve, stop, wait_ping


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    port = free_port()
    process = start_serve(model_dir, port, tmp_path_factory.mktemp("serve"))
    wait_ping(port, process)
    yield f"http://127.0.0.1:{port}", process
    stop(process)


@pytest.fixture(scope="module")
def ray_cluster():
    """A private single-host Ray instance shared by a module's tests (as the image runs one)."""
    import ray  # the auth token is set by tests/conftest.py

    ray.init(num_cpus=2, object_store_memory=150 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
