import pytest

from smray.contracts.cluster import TOKEN_ENV
from smray.errors import UserError
from smray.ray_bootstrap.auth import cluster_token, ray_env


def test_token_comes_from_the_job_environment():
    token = "s3cr3t-" * 4
    assert cluster_token({TOKEN_ENV: token}, host_count=3) == token
    assert ray_env(token) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


def test_multi_host_job_without_token_is_refused():
    with pytest.raises(UserError, match=f"{TOKEN_ENV} is not set: a 2-host job"):
        cluster_token({}, host_count=2)


def test_short_token_is_refused():
    with pytest.raises(UserError, match="at least 16"):
        cluster_token({TOKEN_ENV: "short"}, host_count=2)


def test_single_host_makes_a_fresh_random_token():
    first, second = cluster_token({}, 1), cluster_token({}, 1)
    assert first != second and len(first) >= 32
