"""What a local deploy leaves behind when it fails or is interrupted: a version is approved only once it
serves (`smray run local`, the scheduler), and a deploy interrupted at any step (Ctrl-C, SIGTERM) leaves
the endpoint as it was, with no container of its own left running, restart policy or not.

Docker is faked here: tests/container/test_endpoint.py deploys, updates and fails real containers, and
tests/container/test_pipeline_local.py and test_schedule_local.py approve and deploy for real."""

import itertools
import subprocess
from types import SimpleNamespace

import pytest

from smray import gate, model_artifact, schema
from smray.errors import PlatformError
from smray.registry.local import LocalRegistry
from smray.registry.records import Approval
from smray.schema import Task
from smray.workstation import cli, datagen
from smray.workstation import local_workflow as flow
from smray.workstation.endpoints import local as local_endpoints
from smray.workstation.endpoints.local import HOME_LABEL, LABEL, LocalEndpoints
from smray.workstation.schedule import local_loop
from smray.workstation.schedule.expressions import parse
from tests.support.local_run import passing_pipeline
from tests.support.models import build_model


@pytest.fixture
def failing_deploys(monkeypatch):
    def deploy(self, name, version, image="", port=0):
        raise PlatformError("docker run failed: ['no space left on device']")

    monkeypatch.setattr(LocalEndpoints, "deploy", deploy)


def test_run_local_leaves_a_version_whose_deploy_failed_pending(
    own_smray_home, tmp_path, monkeypatch, failing_deploys
):
    passing_pipeline(monkeypatch, build_model(tmp_path / "model", rounds=5))
    table = tmp_path / "houses.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "local", "--input", str(table)])
    assert exit_.value.code == "smray: platform error: docker run failed: ['no space left on device']"
    version = LocalRegistry(own_smray_home / "registry").describe("housing", 1)
    assert version.status is Approval.PENDING


def test_the_scheduler_leaves_a_version_whose_deploy_failed_pending(tmp_path, failing_deploys):
    registry = LocalRegistry(tmp_path / "registry")
    new = registry.register("housing", build_model(tmp_path / "model", rounds=5), "smray:1", {})
    model = model_artifact.load(tmp_path / "model")
    folder = tmp_path / "runs" / "exec1"
    (folder / "test").mkdir(parents=True)
    frame = datagen.housing_frame(100, seed=21, with_ids=False)
    model.transform.apply(frame[[schema.housing().target, *model.features]]).to_parquet(
        folder / "test" / "p.parquet"
    )
    result = flow.Result(
        SimpleNamespace(folder=folder), None, flow.Gate(gate.default(Task.REGRESSION), new), model
    )
    record = local_loop.Record("t0", "", "exec1", "Succeeded", "", None, "", None, "", "")
    scheduler = local_loop.Scheduler(tmp_path, parse("rate(1 day)"), tmp_path / "input.json")
    with pytest.raises(PlatformError, match="no space left"):
        scheduler._decide(result, None, flow.Settings(endpoint="houses"), tmp_path, record)
    assert registry.describe("housing", 1).status is Approval.PENDING
    assert result.approval is None


class FakeDocker:
    """The Docker engine as local endpoints use it: containers by name, with labels, state and restart
    policy. The call numbered `interrupt_at` is done by the engine, then Ctrl-C comes before the CLI
    returns: the worst moment (the container exists, the deploy does not know it)."""

    def __init__(self) -> None:
        self.containers: dict[str, dict] = {}
        self.calls = 0
        self.interrupt_at = 0
        self.linked = ""  # the container the endpoint's current.sock points at

    def step(self) -> None:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = self._engine(args)
        self.step()
        if out is None and check:
            raise PlatformError(f"docker {args[0]} failed")
        return subprocess.CompletedProcess(["docker", *args], 1 if out is None else 0, out or "", "")

    def _engine(self, args: tuple[str, ...]) -> str | None:
        command, rest = args[0], args[1:]
        pairs = list(itertools.pairwise(rest))
        after = dict(pairs)  # option -> value
        if command == "run":
            labels = dict(v.split("=", 1) for o, v in pairs if o == "--label")
            port = after["-p"].split(":")[1] or "41000"  # a fixed port, or one the engine picks
            self.containers[after["--name"]] = {
                "labels": labels,
                "running": True,
                "restart": "no",
                "port": port,
            }
            return "an-id\n"
        if command == "ps":
            wanted = [v.removeprefix("label=").split("=", 1) for o, v in pairs if o == "--filter"]
            return "".join(
                f"{name}\n"
                for name, c in self.containers.items()
                if all(c["labels"].get(key) == value for key, value in wanted)
            )
        if command == "exec":
            self.linked = rest[0]
        if command in ("network", "volume", "exec", "logs"):
            return ""
        name = rest[0] if command == "port" else rest[-1]
        if command == "rm":
            self.containers.pop(name, None)
            return ""
        if name not in self.containers:
            return None
        container = self.containers[name]
        if command == "update":
            container["restart"] = after["--restart"]
        elif command == "stop":
            container["running"] = False
        elif command == "port":
            return f"127.0.0.1:{container['port']}\n"
        elif command == "inspect" and "Running" in rest[1]:
            return f"{str(container['running']).lower()}\n"
        elif command == "inspect":
            key = rest[1].split('"')[1]
            return f"{container['labels'].get(key, '<no value>')}\n"
        return ""


@pytest.fixture
def docker(monkeypatch):
    fake = FakeDocker()
    monkeypatch.setattr(local_endpoints, "_docker", fake)
    monkeypatch.setattr(local_endpoints, "_wait_ping", lambda container, port, timeout_s: fake.step())
    monkeypatch.setattr(local_endpoints, "SETTLE_S", 0.0)
    return fake


@pytest.fixture
def versions(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    return [
        registry.register("housing", build_model(tmp_path / f"m{i}", rounds=3), "smray:1", {}) for i in (1, 2)
    ]


def _left(endpoints: LocalEndpoints, docker: FakeDocker) -> tuple[set[str], set[str]]:
    """The endpoint's containers on the engine, and what its record names."""
    current = endpoints.describe("houses")
    named = {current.container, current.router} if current else set()
    models = endpoints.root / "houses" / "models"
    kept = {d.name for d in models.iterdir()} if models.is_dir() else set()
    assert kept == ({current.container} if current else set())  # no model folder of another container
    assert current is None or docker.linked == current.container  # the router forwards to the record's
    return set(docker.containers), named


@pytest.mark.parametrize("existing", [False, True], ids=["new endpoint", "update"])
def test_a_deploy_interrupted_at_any_step_leaves_no_container_of_its_own(
    tmp_path, docker, versions, existing
):
    endpoints = LocalEndpoints(tmp_path / "home", drain_s=0)
    if existing:
        endpoints.deploy("houses", versions[0])
    interrupted = 0
    while True:
        docker.interrupt_at = docker.calls + interrupted + 1
        try:
            deployed = endpoints.deploy("houses", versions[1])
        except KeyboardInterrupt:
            interrupted += 1
            running, named = _left(endpoints, docker)
            assert running == named, f"interrupted at call {interrupted}: {running - named} left"
            continue
        break
    assert interrupted > 5 and deployed.model == "housing/2"
    running, named = _left(endpoints, docker)
    assert running == named and all(docker.containers[c]["restart"] == "unless-stopped" for c in named)


def test_containers_a_killed_deploy_left_are_removed_by_the_next_deploy_and_by_delete(
    tmp_path, docker, versions
):
    endpoints = LocalEndpoints(tmp_path / "home", drain_s=0)
    endpoints.deploy("houses", versions[0])
    home = str(endpoints.root.resolve())
    stray = {"labels": {LABEL: "houses", HOME_LABEL: home}, "running": True, "restart": "unless-stopped"}
    another_home = {"labels": {LABEL: "houses", HOME_LABEL: "/elsewhere"}, "running": True, "restart": "no"}
    docker.containers |= {"smray-houses-v7-abcdef": dict(stray), "theirs": another_home}
    endpoints.deploy("houses", versions[1])
    running, named = _left(endpoints, docker)
    assert running == named | {"theirs"}
    docker.containers["smray-houses-v8-abcdef"] = dict(stray)
    endpoints.delete("houses")
    assert set(docker.containers) == {"theirs"}
