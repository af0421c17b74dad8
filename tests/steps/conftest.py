import os

import pytest

from smray.ray_bootstrap import auth


@pytest.fixture(scope="module")
def ray_cluster():
    """A private single-host Ray instance shared by a module's tests (as the image runs one)."""
    # Ray reads its auth settings when first imported: set them before.
    os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))
    import ray

    ray.init(num_cpus=2, object_store_memory=150 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
