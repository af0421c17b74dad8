"""Local endpoints: a model version's `serve` container behind a `route` container (nginx) that holds
the endpoint's port, so that deploying a new version never drops a request:

1. start the new model container and wait until it answers /ping (a failure, or an interruption at any
   step up to the record's write, leaves the endpoint as it was, and removes what this deploy started;
   what a deploy killed outright left is removed by the next deploy or delete);
2. point the router at it: the model listens on a Unix socket in the endpoint's sockets volume, and the
   router forwards to the link `current.sock`, which the deploy replaces by an atomic rename;
3. stop the old container: SIGTERM makes it finish the requests it has (up to `drain_s`) and exit.

Both containers restart with Docker (a reboot brings the endpoint back). An endpoint whose router is down
all the same (stopped by hand, or Docker restarted without it), or a router of an earlier smray, is
started afresh on the port it had, so its URL stays.

State lives under `<home>/endpoints/<name>/`: endpoint.json and the unpacked models.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from smray import model_artifact
from smray.errors import PlatformError, UserError
from smray.locks import exclusive
from smray.registry.records import ModelVersion
from smray.retry import NotYet, retry
from smray.workstation import validation
from smray.workstation.endpoints.client import Connection

NETWORK = "smray-endpoints"
LABEL = "io.smray.endpoint"
HOME_LABEL = "io.smray.endpoints-root"  # the home an endpoint belongs to: names are per home
FRONT_LABEL = "io.smray.front"  # the router's kind: one without it (an earlier smray's) is replaced
FRONT = "nginx-socket-link"
SOCKETS = "/sockets"  # the endpoint's volume, in both containers
SETTLE_S = 1.0  # after the switch: connections the router opened to the old model are accepted by then
SERVE_PORT = 8080
# Routers' ports, when none is asked for: below Linux's ephemeral ports (32768 up), where Docker picks the
# model containers' ports at each start, so that a reboot cannot hand a router's port to one of them.
ROUTER_PORTS = range(18080, 32768)
_CONTAINER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Docker's container name rule


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    port: int
    group: str  # the model package group and version it serves
    version: int
    image: str
    container: str  # the model container serving now
    router: str
    updated: str

    @property
    def model(self) -> str:
        return f"{self.group}/{self.version}"

    @classmethod
    def from_record(cls, record: dict) -> Endpoint:
        if "model" in record:  # written by an earlier smray: "group/version"
            group, version = record.pop("model").rsplit("/", 1)
            record |= {"group": group, "version": int(version)}
        return validation.record(cls, record)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PlatformError(f"docker {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result


class LocalEndpoints:
    def __init__(self, home: Path, drain_s: float = 30.0, health_timeout_s: float = 90.0) -> None:
        self.root = home / "endpoints"
        self.drain_s = drain_s
        self.health_timeout_s = health_timeout_s

    def _dir(self, name: str) -> Path:
        """Every path of an endpoint is built from here: a name such as `../x` never becomes one."""
        return self.root / validation.endpoint_name(name)

    def describe(self, name: str) -> Endpoint | None:
        state = self._dir(name) / "endpoint.json"
        if not state.is_file():
            return None
        try:
            record = json.loads(state.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            endpoint = Endpoint.from_record(record)
            if not all(_CONTAINER.fullmatch(str(c)) for c in (endpoint.container, endpoint.router)):
                raise ValueError("a container name that is not one")  # it names a folder to delete
            return endpoint
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"{state} is not an endpoint record ({exc}): restore it, or remove the endpoint's "
                "containers (docker ps --filter label=io.smray.endpoint) and that folder"
            ) from None

    def list(self) -> list[Endpoint]:
        if not self.root.is_dir():
            return []
        names = sorted(d.name for d in self.root.iterdir() if validation.is_endpoint_name(d.name))
        return [e for e in map(self.describe, names) if e]

    def _one_at_a_time(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Deploys and deletes of one endpoint wait for each other: two swaps must not interleave."""
        return exclusive(
            self._dir(name).with_name(f".{name}.lock"),
            on_wait=lambda: print(f"endpoint {name}: waiting for another deploy or delete", flush=True),
        )

    def deploy(self, name: str, version: ModelVersion, image: str = "", port: int = 0) -> Endpoint:
        """Creates the endpoint, or moves an existing one to `version` without dropping requests."""
        with self._one_at_a_time(name):
            return self._deploy(name, version, image, port)

    def _deploy(self, name: str, version: ModelVersion, image: str, port: int) -> Endpoint:
        image = image or version.image
        current = self.describe(name)
        down = current is not None and not (
            _running(current.router)
            and _label(current.router, FRONT_LABEL) == FRONT
            and _published_port(current.router) == current.port  # one an earlier smray let Docker pick
        )
        if current is not None and down:  # nothing is answering, or an earlier smray's router: start afresh
            print(f"endpoint {name}: starting its router afresh on port {current.port}", flush=True)
            for container in (current.router, current.container):
                _remove(container)
        serving = current if current is not None and not down else None
        self._remove_strays(name, keep={serving.container, serving.router} if serving else set())
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        _ensure_network()
        sockets = self._sockets_volume(name)
        container = f"smray-{name}-v{version.version}-{secrets.token_hex(3)}"
        model_dir = folder / "models" / container
        try:
            self._start_model(name, version, image, container, model_dir, sockets)
            _wait_ping(container, _published_port(container), self.health_timeout_s)
            _keep_up(container)
            _switch(container)
            if serving is None:
                router, port = self._start_router(name, image, port, current.port if current else 0, sockets)
            else:
                router, port = serving.router, serving.port
            endpoint = Endpoint(
                name=name,
                url=f"http://127.0.0.1:{port}",
                port=port,
                group=version.group,
                version=version.version,
                image=image,
                container=container,
                router=router,
                updated=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            _write_atomic(folder / "endpoint.json", json.dumps(asdict(endpoint), indent=2))
        except BaseException:
            # Failed or interrupted (Ctrl-C, SIGTERM): the endpoint stays as it was, and nothing this deploy
            # started is left running; unless its record was written, and the new version is the endpoint.
            if (recorded := self.describe(name)) is None or recorded.container != container:
                self._roll_back(name, container, model_dir, serving)
            raise
        if serving is not None:
            try:
                time.sleep(SETTLE_S)
                _docker("stop", "-t", f"{self.drain_s + 10:.0f}", serving.container, check=False)
            finally:  # interrupted while it drains: it goes at once, the new version serves already
                shutil.rmtree(folder / "models" / serving.container, ignore_errors=True)
                _remove(serving.container)
        return endpoint

    def _roll_back(self, name: str, container: str, model_dir: Path, serving: Endpoint | None) -> None:
        _remove(container)
        if serving is None:
            _remove(self._router_name(name))
        else:
            _switch(serving.container, check=False)
        shutil.rmtree(model_dir, ignore_errors=True)

    def _remove_strays(self, name: str, keep: set[str]) -> None:
        """Removes the endpoint's containers and model folders that `keep` does not name: those a deploy
        killed mid-way left (kill -9, a power cut), running and perhaps restarted by Docker."""
        filters = [
            arg for key, value in self._labels(name).items() for arg in ("--filter", f"label={key}={value}")
        ]
        listed = _docker("ps", "--all", "--format", "{{.Names}}", *filters).stdout.split()
        for container in set(listed) - keep:
            _remove(container)
        models = self._dir(name) / "models"
        for folder in models.iterdir() if models.is_dir() else ():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def delete(self, name: str) -> None:
        with self._one_at_a_time(name):
            self._delete(name)

    def _delete(self, name: str) -> None:
        current = self.describe(name)
        if current is None:
            raise UserError(f"no local endpoint named {name}")
        for container in (current.router, current.container):
            _docker("stop", "-t", f"{self.drain_s + 10:.0f}", container, check=False)
            _remove(container)
        self._remove_strays(name, keep=set())
        _docker("volume", "rm", self._sockets_volume(name, create=False), check=False)
        shutil.rmtree(self._dir(name))

    def _start_model(
        self, name: str, version: ModelVersion, image: str, container: str, model_dir: Path, sockets: str
    ) -> None:
        model_dir.mkdir(parents=True)
        model_artifact.extract(Path(version.artifact), model_dir)  # SageMaker unpacks it into /opt/ml/model
        env = {"SMRAY_SERVE_WORKERS": os.environ.get("SMRAY_SERVE_WORKERS", "2")}
        if os.environ.get("SMRAY_SERVE_ACCESS_LOG"):
            env["SMRAY_SERVE_ACCESS_LOG"] = os.environ["SMRAY_SERVE_ACCESS_LOG"]
        _run(
            container,
            self._labels(name),
            [f"{model_dir.resolve()}:/opt/ml/model:ro", f"{sockets}:{SOCKETS}"],
            f"127.0.0.1::{SERVE_PORT}",
            image,
            ["serve", "--socket", f"{SOCKETS}/{container}.sock", "--drain-s", f"{self.drain_s:g}"],
            env=env,
        )

    def _router_name(self, name: str) -> str:
        # Endpoint names are per smray home: two homes may both have an endpoint "housing".
        home_key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]
        return f"smray-endpoint-{name}-{home_key}"

    def _sockets_volume(self, name: str, create: bool = True) -> str:
        """A Docker volume, not a folder of the host: Unix sockets cross containers in a volume everywhere
        (Docker Desktop's shared host folders do not carry them)."""
        volume = f"{self._router_name(name)}-sockets"
        if create:
            labels = [f"--label={key}={value}" for key, value in self._labels(name).items()]
            _docker("volume", "create", *labels, volume)
        return volume

    def _start_router(self, name: str, image: str, port: int, recorded: int, sockets: str) -> tuple[str, int]:
        """On `port` where one is asked for; else on the port the endpoint had (`recorded`), or where that
        is taken now, on a free one. Always a fixed port: one Docker picks is picked anew at each start
        (a reboot), and the endpoint's URL must stay."""
        router = self._router_name(name)
        candidates = [port] if port else itertools.chain([recorded] if recorded else [], _free_ports())
        for candidate in candidates:
            _remove(router)  # a stale router of this home's endpoint, or one whose port was taken
            try:
                _run(
                    router,
                    self._labels(name) | {FRONT_LABEL: FRONT},
                    [f"{sockets}:{SOCKETS}"],
                    f"127.0.0.1:{candidate}:{SERVE_PORT}",
                    image,
                    ["route", "--sockets", SOCKETS, "--drain-s", f"{self.drain_s:g}"],
                )
            except PlatformError as exc:
                if port or not _port_taken(exc):
                    raise
                continue
            if recorded and candidate != recorded:
                print(f"endpoint {name}: port {recorded} is taken now; it moves to {candidate}", flush=True)
            _wait_ping(router, candidate, self.health_timeout_s)  # removed by the deploy's roll-back
            _keep_up(router)
            return router, candidate
        ports = f"{ROUTER_PORTS.start}-{ROUTER_PORTS.stop - 1}"
        raise PlatformError(f"endpoint {name}: no free port for its router in {ports}")

    def _labels(self, name: str) -> dict[str, str]:
        return {LABEL: name, HOME_LABEL: str(self.root.resolve())}


def _run(
    container: str,
    labels: dict[str, str],
    volumes: list[str],
    publish: str,
    image: str,
    command: list[str],
    env: dict[str, str] | None = None,
) -> None:
    """A detached container on the endpoints' network, labelled with its endpoint and home."""
    options = ["--name", container, "--network", NETWORK, "-p", publish]
    for volume in volumes:
        options += ["-v", volume]
    for key, value in labels.items():
        options += ["--label", f"{key}={value}"]
    for key, value in (env or {}).items():
        options += ["-e", f"{key}={value}"]
    _docker("run", "-d", *options, image, *command)


def _ensure_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode != 0:
        _docker("network", "create", NETWORK)


def _published_port(container: str) -> int:
    out = _docker("port", container, f"{SERVE_PORT}/tcp").stdout.split()
    if not out:
        raise UserError(f"container {container} publishes no port")
    return int(out[0].rsplit(":", 1)[1])


def _free_ports() -> Iterator[int]:
    """The ports of ROUTER_PORTS that nothing on this host listens on now (Docker may still refuse one
    that another of its containers holds: the caller tries the next)."""
    for port in ROUTER_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def _port_taken(error: PlatformError) -> bool:
    return any(s in str(error) for s in ("port is already allocated", "address already in use"))


def _switch(container: str, check: bool = True) -> None:
    """Points the endpoint's `current.sock` at this model container's socket (an atomic rename, from
    inside the container, where the volume is mounted)."""
    link = f"{SOCKETS}/current.sock"
    script = f'ln -sfn "{container}.sock" "{link}.next" && mv -Tf "{link}.next" "{link}"'
    _docker("exec", container, "sh", "-c", script, check=check)


def _inspect(container: str, template: str) -> str:
    """One field of `docker inspect`; "" for a container that does not exist."""
    out = _docker("inspect", "-f", template, container, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def _label(container: str, key: str) -> str:
    return _inspect(container, f'{{{{index .Config.Labels "{key}"}}}}')


def _running(container: str) -> bool:
    return _inspect(container, "{{.State.Running}}") == "true"


def _wait_ping(container: str, port: int, timeout_s: float) -> None:
    def healthy() -> None:
        if not _running(container):
            logs = _docker("logs", "--tail", "5", container, check=False)
            tail = " | ".join((logs.stdout + logs.stderr).strip().splitlines()[-3:])
            raise UserError(f"container {container} stopped before answering /ping: {tail}")
        status = Connection(f"http://127.0.0.1:{port}", timeout_s=5).request("GET", "/ping").status
        if status != 200:
            raise NotYet(f"/ping answered {status}")

    retry(healthy, what=f"container {container} answering /ping", timeout_s=timeout_s, max_delay_s=0.5)


def _keep_up(container: str) -> None:
    """From now on Docker restarts it, a reboot included (not before it is healthy: a container that
    cannot start must fail its deploy, not loop)."""
    _docker("update", "--restart", "unless-stopped", container)


def _remove(container: str) -> None:
    _docker("rm", "-f", container, check=False)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
