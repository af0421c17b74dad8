"""Local endpoints of real containers: deploy, updates under load with zero failed or repeated requests,
hostile clients at the endpoint's port, a bad version that leaves the endpoint as it was, delete."""

import collections
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smray import model_artifact
from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.retry import NotYet, retry
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import FRONT, FRONT_LABEL, HOME_LABEL, LABEL, LocalEndpoints
from tests.support import hostile
from tests.support.models import build_model, sample_rows

from .conftest import IMAGE


@pytest.fixture
def endpoints(docker_client, tmp_path):
    made = LocalEndpoints(tmp_path / "home")
    yield made
    for endpoint in made.list():
        made.delete(endpoint.name)
    mine = f"{HOME_LABEL}={made.root.resolve()}"  # this test's home only: never a user's endpoints
    leftovers = docker_client.containers.list(all=True, filters={"label": mine})
    assert leftovers == [], [c.name for c in leftovers]
    volumes = docker_client.volumes.list(filters={"label": mine})
    assert volumes == [], [v.name for v in volumes]


def _wait_serving(url: str) -> None:
    def serving() -> None:
        if (status := Connection(url, timeout_s=5).request("GET", "/ping").status) != 200:
            raise NotYet(f"/ping answered {status}")

    retry(serving, what=f"{url} answering /ping", timeout_s=60, max_delay_s=0.5)


def _predict(url: str, rows) -> list[float]:
    answer = Connection(url).invoke(rows.to_csv(header=False, index=False).encode(), "text/csv")
    assert answer.status == 200, answer.body
    return [float(v) for v in answer.body.split()]


def test_deploy_update_under_load_and_a_failed_update(endpoints, tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    v1 = registry.register("housing", build_model(tmp_path / "m1", rounds=5), IMAGE, {})
    v2 = registry.register("housing", build_model(tmp_path / "m2", rounds=60), IMAGE, {})
    rows = sample_rows(3)

    first = endpoints.deploy("houses", v1)
    assert first.model == "housing/1"
    expected_v1 = model_artifact.load(tmp_path / "m1").predict(rows, scaled=False)
    assert _predict(first.url, rows) == pytest.approx(list(expected_v1), rel=1e-5)

    body = tmp_path / "row.csv"
    body.write_bytes(rows.to_csv(header=False, index=False).encode())
    stop_file = tmp_path / "stop"
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smray.workstation.endpoints.client",
            first.url,
            str(body),
            "text/csv",
            "120",
            str(stop_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    second = endpoints.deploy("houses", v2)
    time.sleep(3)
    stop_file.write_text("")
    result = json.loads(load.communicate(timeout=60)[0])
    assert result["errors"] == 0, result["first_errors"]
    assert result["requests"] > 50
    assert second.url == first.url and second.model == "housing/2"
    expected_v2 = model_artifact.load(tmp_path / "m2").predict(rows, scaled=False)
    assert _predict(second.url, rows) == pytest.approx(list(expected_v2), rel=1e-5)
    running = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout
    assert first.container not in running and second.container in running

    # `smray invoke` by endpoint name, CSV and JSON files, answers as sent
    (tmp_path / "rows.csv").write_text(rows.to_csv(index=False))
    (tmp_path / "rows.json").write_text(json.dumps({"instances": rows.to_dict(orient="records")}))
    env = {**os.environ, "SMRAY_HOME": str(endpoints.root.parent)}
    smray = str(Path(sys.executable).with_name("smray"))
    csv_out = subprocess.run(
        [smray, "invoke", "houses", str(tmp_path / "rows.csv")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [float(v) for v in csv_out.split()] == pytest.approx(list(expected_v2), rel=1e-5)
    json_out = subprocess.run(
        [smray, "invoke", "houses", str(tmp_path / "rows.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [p["score"] for p in json.loads(json_out)["predictions"]] == pytest.approx(
        list(expected_v2), rel=1e-5
    )
    bad = subprocess.run(
        [smray, "invoke", "houses", str(body)],
        env={**env, "SMRAY_HOME": str(tmp_path / "nohome")},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no local endpoint named houses" in bad.stderr

    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    (broken_dir / "model.json").write_text("not a model")
    broken = registry.register("housing", broken_dir, IMAGE, {})
    with pytest.raises(UserError, match="stopped before answering /ping"):
        endpoints.deploy("houses", broken)
    assert endpoints.describe("houses").model == "housing/2"
    assert _predict(second.url, rows) == pytest.approx(list(expected_v2), rel=1e-5)


def test_an_endpoint_restarts_with_docker_and_a_deploy_brings_back_one_that_is_down(endpoints, tmp_path):
    """After a reboot Docker restarts both containers; one it did not restart (stopped by hand, or a
    daemon that came back without it) is started afresh by the next deploy, on the same URL."""
    registry = LocalRegistry(tmp_path / "registry")
    v1 = registry.register("housing", build_model(tmp_path / "m1", rounds=5), IMAGE, {})
    v2 = registry.register("housing", build_model(tmp_path / "m2", rounds=20), IMAGE, {})
    rows = sample_rows(2)
    first = endpoints.deploy("houses", v1)
    for container in (first.router, first.container):
        policy = subprocess.run(
            ["docker", "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert policy == "unless-stopped", container
    subprocess.run(
        ["docker", "stop", "-t", "1", first.router, first.container], check=True, capture_output=True
    )

    again = endpoints.deploy("houses", v2)
    assert again.url == first.url and again.model == "housing/2"
    expected = model_artifact.load(tmp_path / "m2").predict(rows, scaled=False)
    assert _predict(again.url, rows) == pytest.approx(list(expected), rel=1e-5)
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout
    assert first.container not in names.split()  # the old model container is gone, not left stopped


def test_the_url_stays_when_docker_restarts_the_containers(endpoints, tmp_path):
    """A port Docker picks is picked anew at each start: after a reboot the recorded URL answered nothing
    (or another endpoint). The router's port is fixed, and a router found on another port than its record
    (an earlier smray's) is started afresh on the recorded one."""
    registry = LocalRegistry(tmp_path / "registry")
    v1 = registry.register("housing", build_model(tmp_path / "m1", rounds=5), IMAGE, {})
    first = endpoints.deploy("houses", v1)
    subprocess.run(
        ["docker", "restart", "-t", "1", first.router, first.container], check=True, capture_output=True
    )
    _wait_serving(first.url)  # the model container takes seconds to answer again
    assert _predict(first.url, sample_rows(2))

    subprocess.run(["docker", "rm", "-f", first.router], check=True, capture_output=True)
    moved = subprocess.run(  # as an earlier smray started it: on a port Docker picked
        [
            "docker",
            "run",
            "-d",
            "--name",
            first.router,
            "-p",
            "127.0.0.1::8080",
            "--network",
            "smray-endpoints",
            "-v",
            f"{first.router}-sockets:/sockets",
            "--label",
            f"{LABEL}=houses",
            "--label",
            f"{HOME_LABEL}={endpoints.root.resolve()}",
            "--label",
            f"{FRONT_LABEL}={FRONT}",
            IMAGE,
            "route",
            "--sockets",
            "/sockets",
        ],
        check=True,
        capture_output=True,
    )
    assert moved.returncode == 0
    again = endpoints.deploy("houses", v1)
    assert again.url == first.url
    assert _predict(again.url, sample_rows(2))


def test_hostile_clients_at_the_endpoint_s_port(endpoints, tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    endpoint = endpoints.deploy(
        "houses", registry.register("housing", build_model(tmp_path / "m"), IMAGE, {})
    )
    hostile.check_every_case(endpoint.port, 10, "at the endpoint")  # the router's default deadline


class Follow:
    """`docker logs -f` of a container from its start until it is removed: its access log survives it."""

    def __init__(self, container: str, folder: Path) -> None:
        self.out = folder / f"{container}.log"
        with self.out.open("w") as out:
            self.process = subprocess.Popen(["docker", "logs", "-f", container], stdout=out, stderr=out)

    def request_ids(self) -> list[str]:
        self.process.terminate()
        self.process.wait(timeout=30)
        return re.findall(r'"POST /invocations HTTP/1\.\d" \d+ .* id=(\S+)', self.out.read_text())


def test_eight_clients_through_two_back_to_back_deploys(endpoints, tmp_path, monkeypatch):
    """1-row and 1000-row requests from 8 clients while the endpoint moves v1 -> v2 -> v3: every request
    is answered 200, and the model containers' access logs hold each request exactly once."""
    monkeypatch.setenv("SMRAY_SERVE_ACCESS_LOG", "1")
    registry = LocalRegistry(tmp_path / "registry")
    versions = [
        registry.register("housing", build_model(tmp_path / f"m{n}", rounds=5 + n), IMAGE, {})
        for n in range(3)
    ]
    endpoint = endpoints.deploy("houses", versions[0])
    followed = [Follow(endpoint.container, tmp_path)]
    bodies = [sample_rows(n).to_csv(header=False, index=False).encode() for n in (1, 1000)]
    sent: list[str] = []
    failed: list[str] = []
    done = threading.Event()

    def client(number: int) -> None:
        conn = Connection(endpoint.url, timeout_s=60)
        for n in itertools.count():
            if done.is_set():
                return
            request_id = f"c{number}-{n}"
            headers = {"Content-Type": "text/csv", "X-Request-Id": request_id}
            sent.append(request_id)
            try:
                answer = conn.request("POST", "/invocations", bodies[n % 2], headers)
                if answer.status != 200:
                    failed.append(f"{request_id}: HTTP {answer.status} {answer.body[:100]!r}")
            except OSError as exc:
                failed.append(f"{request_id}: {exc!r}")
                conn.close()

    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for c in clients:
        c.start()
    try:
        time.sleep(2)
        for version in versions[1:]:
            endpoint = endpoints.deploy("houses", version)
            followed.append(Follow(endpoint.container, tmp_path))
        time.sleep(2)
    finally:
        done.set()
        for c in clients:
            c.join()
    time.sleep(0.5)  # the last answers' log lines
    served = collections.Counter(i for f in followed for i in f.request_ids())
    assert failed == [], failed[:5]
    assert endpoint.model == "housing/3" and len(sent) > 100
    repeated = {i: n for i, n in served.items() if n > 1}
    assert repeated == {}, list(repeated.items())[:5]
    assert set(served) == set(sent), (len(served), len(sent))
    print(f"{len(sent)} requests through two deploys: 0 failed, 0 repeated")
