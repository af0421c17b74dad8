"""Work on a given host (`ray_tasks.on_host`) on a real two-node Ray cluster (two raylets on this
machine): this host's work runs in the calling process, another host's as a Ray task pinned there, and
`settle` gives both as values, a task's UserError as itself."""

import os

import pytest

from smray.entrypoints import ray_tasks
from smray.errors import UserError


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False},
    )
    other = cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield ray.get_runtime_context().get_node_id(), other.node_id
    ray.shutdown()
    cluster.shutdown()


def where(tag: str) -> tuple[str, str, int]:
    import ray

    return tag, ray.get_runtime_context().get_node_id(), os.getpid()


def three(value: int) -> tuple[int, int, int]:
    return value, value + 1, value + 2


def refuse(message: str) -> None:
    raise UserError(message)


def test_this_hosts_work_runs_here_and_the_other_hosts_as_a_task_there(two_nodes):
    import ray

    here, there = two_nodes
    results = [ray_tasks.on_host(there, where, "there"), ray_tasks.on_host(here, where, "here")]
    assert isinstance(results[0], ray.ObjectRef) and results[1] == ("here", here, os.getpid())
    settled = ray_tasks.settle(results)
    assert settled[1] == ("here", here, os.getpid())
    assert settled[0][:2] == ("there", there) and settled[0][2] != os.getpid()


def test_several_returns_come_back_one_by_one(two_nodes):
    here, there = two_nodes
    remote, local = (
        ray_tasks.on_host(there, three, 1, returns=3),
        ray_tasks.on_host(here, three, 1, returns=3),
    )
    assert ray_tasks.settle(list(remote)) == list(local) == [1, 2, 3]


def test_a_user_error_on_the_other_host_is_raised_as_itself(two_nodes):
    _, there = two_nodes
    with pytest.raises(UserError) as raised:
        ray_tasks.settle([ray_tasks.on_host(there, refuse, "channel train: column X is not a number")])
    assert type(raised.value) is UserError
    assert str(raised.value) == "channel train: column X is not a number"
