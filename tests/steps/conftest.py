import pytest


@pytest.fixture(scope="module")
def ray_cluster():
    """A private single-host Ray instance shared by a module's tests (as the image runs one)."""
    import ray  # the auth token is set by tests/conftest.py

    ray.init(num_cpus=2, object_store_memory=150 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
