import pytest

from smray.errors import UserError
from smray.ray_bootstrap.settings import ClusterSettings


def test_defaults_and_overrides_from_env():
    assert ClusterSettings.from_env({}) == ClusterSettings()
    s = ClusterSettings.from_env({"SMRAY_JOIN_TIMEOUT_S": "12.5", "SMRAY_INCLUDE_DASHBOARD": "yes"})
    assert s.join_timeout_s == 12.5 and s.include_dashboard is True
    assert ClusterSettings().include_dashboard is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMRAY_GCS_PORT": "abc"}, "SMRAY_GCS_PORT must be an integer"),
        ({"SMRAY_JOIN_TIMEOUT_S": "-1"}, "must not be negative"),
        ({"SMRAY_INCLUDE_DASHBOARD": "maybe"}, "true or false"),
        ({"SMRAY_JOIN_TIMEOUT_S": "nan"}, "SMRAY_JOIN_TIMEOUT_S must be a finite number, got 'nan'"),
        ({"SMRAY_LIFELINE_SILENCE_S": "inf"}, "must be a finite number"),
        ({"SMRAY_GCS_PORT": "70000"}, "SMRAY_GCS_PORT must be a port between 1 and 65535"),
        ({"SMRAY_LIFELINE_PORT": "0"}, "must be a port between 1 and 65535"),
    ],
)
def test_bad_values_are_clear_errors(env, message):
    with pytest.raises(UserError, match=message):
        ClusterSettings.from_env(env)
