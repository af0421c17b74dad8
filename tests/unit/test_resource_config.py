import pytest

from smray import paths
from smray.contracts.resource_config import JobKind, discover, job_kind, parse
from smray.errors import UserError
from tests.conftest import write_json

LOCAL_MODE = {
    "current_host": "algo-2-9qxfc",
    "hosts": ["algo-2-9qxfc", "algo-1-9qxfc", "algo-3-9qxfc"],
    "network_interface_name": "eth0",
    "current_instance_type": "local",
}


def test_training_config_is_found_and_hosts_sorted(opt_ml):
    write_json(paths.training_resource_config(), LOCAL_MODE)
    config = discover()
    assert config.kind is JobKind.TRAINING
    assert config.hosts == ("algo-1-9qxfc", "algo-2-9qxfc", "algo-3-9qxfc")
    assert config.head == "algo-1-9qxfc"
    assert config.current_host == "algo-2-9qxfc"
    assert not config.is_head
    assert config.workers == ("algo-2-9qxfc", "algo-3-9qxfc")
    assert config.network_interface == "eth0"


def test_processing_config_is_found(opt_ml):
    write_json(paths.processing_resource_config(), {"current_host": "algo-1", "hosts": ["algo-1"]})
    config = discover()
    assert config.kind is JobKind.PROCESSING
    assert config.is_head and config.workers == ()


def test_training_wins_when_both_exist(opt_ml):
    write_json(paths.training_resource_config(), {"current_host": "algo-1", "hosts": ["algo-1"]})
    write_json(paths.processing_resource_config(), {"current_host": "x", "hosts": ["x"]})
    assert discover().kind is JobKind.TRAINING


def test_missing_config_means_one_local_host(opt_ml):
    config = discover()
    assert job_kind() is JobKind.LOCAL
    assert config.hosts == ("algo-1",) and config.is_head


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"hosts": ["algo-1"]}', "current_host"),
        ('{"current_host": "algo-1", "hosts": []}', "non-empty list"),
        ('{"current_host": "algo-1", "hosts": "algo-1"}', "non-empty list"),
        ('{"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}', "'algo-3' is not in hosts"),
        ('{"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}', "more than once"),
        ('{"current_host": "algo-1", "hosts": ["algo-1", 7]}', "hosts[1]"),
    ],
)
def test_malformed_config_is_a_clear_error(opt_ml, content, message):
    path = write_json(paths.training_resource_config(), content)
    with pytest.raises(UserError) as err:
        discover()
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_head_election_is_the_same_on_every_host():
    hosts = ["algo-10-x", "algo-2-x", "algo-1-x"]
    heads = {parse({"current_host": h, "hosts": hosts}, JobKind.TRAINING).head for h in hosts}
    assert heads == {"algo-1-x"}


def test_instance_groups_are_parsed_and_checked():
    raw = {
        "current_host": "algo-1",
        "current_group_name": "cpu",
        "hosts": ["algo-2", "algo-1"],
        "instance_groups": [
            {"instance_group_name": "cpu", "instance_type": "ml.m5.xlarge", "hosts": ["algo-1"]},
            {"instance_group_name": "gpu", "instance_type": "ml.g5.xlarge", "hosts": ["algo-2"]},
        ],
    }
    config = parse(raw, JobKind.TRAINING)
    assert [(g.name, g.instance_type, g.hosts) for g in config.instance_groups] == [
        ("cpu", "ml.m5.xlarge", ("algo-1",)),
        ("gpu", "ml.g5.xlarge", ("algo-2",)),
    ]
    raw["instance_groups"][1]["hosts"] = ["algo-9"]
    with pytest.raises(UserError, match="algo-9"):
        parse(raw, JobKind.TRAINING)
