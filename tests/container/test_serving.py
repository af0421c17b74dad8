"""`docker run IMAGE serve` as SageMaker runs it: the hostile-client suite against the image's nginx and
gunicorn, and `docker stop` (SIGTERM) answering the request in flight and ending within the drain bound."""

import threading
import time

import pytest

from tests.support import hostile
from tests.support.models import CLIENT_TIMEOUT_S, build_model, sample_rows

from .conftest import IMAGE

LABEL = "io.smray.test"  # this module's containers, and only them


@pytest.fixture
def serving(docker_client, tmp_path):
    model = build_model(tmp_path / "model")
    container = docker_client.containers.run(
        IMAGE,
        ["serve", "--client-timeout-s", f"{CLIENT_TIMEOUT_S:g}", "--drain-s", "10"],
        detach=True,
        volumes={str(model): {"bind": "/opt/ml/model", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={LABEL: "serving"},
        environment={"SMRAY_SERVE_WORKERS": "2"},
    )
    try:
        container.reload()
        port = int(container.ports["8080/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 60
        while True:
            try:
                if hostile.exchange(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").statuses == [200]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.3)
        yield container, port
    finally:
        container.remove(force=True)


def test_hostile_clients_against_the_image(serving):
    _, port = serving
    hostile.check_every_case(port, CLIENT_TIMEOUT_S, "in the container")


def test_docker_stop_answers_the_request_in_flight_and_ends_within_the_drain(serving):
    container, port = serving
    stopped: list[float] = []

    def stop() -> None:
        def run() -> None:
            started = time.monotonic()
            container.stop(timeout=40)
            stopped.append(time.monotonic() - started)

        threading.Thread(target=run).start()

    reply = hostile.in_flight_through_stop(
        port, sample_rows(3).to_csv(header=False, index=False).encode(), stop
    )
    assert reply.statuses == [200], reply
    deadline = time.monotonic() + 30
    while not stopped:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()[-2000:]
    assert stopped[0] < 10 + 5  # the drain bound, not docker's 40 s kill
    print(f"docker stop took {stopped[0]:.2f} s with a request in flight")
