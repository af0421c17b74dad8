"""Fixtures for tests that run the smray image on a real Docker engine."""

import os
import time

import pytest

import docker
from smray.workstation.endpoints.local import LocalEndpoints
from smray.workstation.local_cluster import LABEL, LocalCluster, host_names, new_token

IMAGE = os.environ.get("SMRAY_IMAGE", "smray:latest")
_PROJECTS: set[str] = set()  # the clusters these tests made: a user's own clusters are not ours to count


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a running Docker engine (scripts/host-setup.sh starts one): {exc}")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} is missing: build it with ./build.sh")
    yield client
    leftovers = [
        c.name
        for c in client.containers.list(all=True, filters={"label": LABEL})
        if c.labels.get(LABEL) in _PROJECTS
    ]
    assert leftovers == [], f"containers left behind: {leftovers}"


class Cluster:
    """A LocalCluster plus what tests need to watch it: its containers and their states."""

    def __init__(self, client, local: LocalCluster):
        self.client = client
        self.local = local

    def containers(self) -> dict:
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.local.project}"})
        return {c.labels["com.docker.compose.service"]: c for c in found}

    def state(self, host: str) -> dict:
        c = self.containers()[host]
        c.reload()
        return c.attrs["State"]

    def wait_exit(self, hosts, timeout_s: float) -> dict:
        """Wait until every named host's container has exited; returns host -> State."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {h: self.state(h) for h in hosts}
            if all(s["Status"] == "exited" for s in states.values()):
                return states
            if time.monotonic() > deadline:
                running = [h for h, s in states.items() if s["Status"] != "exited"]
                pytest.fail(f"still running after {timeout_s} s: {running}\n{self.logs()}")
            time.sleep(0.5)

    def wait_log(self, host: str, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.logs(host):
            if time.monotonic() > deadline:
                pytest.fail(f"{host} never logged {text!r}:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, host: str | None = None) -> str:
        hosts = [host] if host else sorted(self.containers())
        return "\n".join(f"--- {h}\n" + self.containers()[h].logs().decode(errors="replace") for h in hosts)


@pytest.fixture
def home(docker_client, tmp_path):
    """An smray home for a test that runs the workflow: its endpoints are deleted afterwards."""
    home = tmp_path / "home"
    yield home
    for endpoint in LocalEndpoints(home).list():
        LocalEndpoints(home).delete(endpoint.name)


@pytest.fixture
def make_cluster(docker_client, tmp_path):
    made: list[Cluster] = []

    def make(count: int, command: list[str], env: dict | None = None, **kwargs) -> Cluster:
        hosts = kwargs.pop("hosts", None) or host_names(count)
        local = LocalCluster(
            workdir=tmp_path / f"cluster{len(made)}",
            image=IMAGE,
            command=command,
            hosts=hosts,
            env={**new_token(), **(env or {})},
            **kwargs,
        )
        cluster = Cluster(docker_client, local)
        made.append(cluster)
        _PROJECTS.add(local.project)
        return cluster

    yield make
    for cluster in made:
        cluster.local.down()
