"""A local N-host SageMaker-style job as a docker compose project (host side).

Each host is one service running the smray image with its own resourceconfig.json, named the way SageMaker
local mode names hosts (`algo-<i>-<5 random chars>`), reachable by that name on one private network. The
container's own host name is left as Docker sets it, as in SageMaker local mode, so nothing can lean on
gethostname().
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import string
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from smray.contracts.cluster import TOKEN_ENV
from smray.contracts.resource_config import JobKind
from smray.errors import UserError

LABEL = "dev.smray.local-cluster"
CONFIG_DIRS = {JobKind.TRAINING: "/opt/ml/input/config", JobKind.PROCESSING: "/opt/ml/config"}


def host_names(count: int, rng: random.Random | None = None) -> list[str]:
    """SageMaker local mode's style: algo-1-x7k2p, algo-2-x7k2p, ... (one random suffix per job)."""
    if count < 1:
        raise UserError(f"a cluster needs at least one host, got {count}")
    rng = rng or random.Random()
    suffix = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
    return [f"algo-{i}-{suffix}" for i in range(1, count + 1)]


@dataclass
class LocalCluster:
    workdir: Path
    image: str
    command: list[str]
    hosts: list[str]
    kind: JobKind = JobKind.TRAINING
    env: dict[str, str] = field(default_factory=dict)
    shm_size: str = "256m"
    object_store_mib: int = 128
    memory_limit: str | None = "3g"
    project: str = ""
    # Host folder -> container path, mounted in every host (as SageMaker local mode shares its folders).
    volumes: dict[str, str] = field(default_factory=dict)
    # Host -> its own folders (host folder -> container path): the instance-local disks of an AWS job.
    host_volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Fault drills: a host's resourceconfig.json replaced by this text; hosts listed but never started.
    raw_configs: dict[str, str] = field(default_factory=dict)
    absent_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in CONFIG_DIRS:
            raise UserError(f"a local cluster runs training or processing jobs, not {self.kind.value}")
        self.project = self.project or f"smray-{self.hosts[0].rsplit('-', 1)[-1]}"

    @property
    def compose_file(self) -> Path:
        return self.workdir / "compose.yaml"

    @property
    def head(self) -> str:
        return sorted(self.hosts)[0]

    @property
    def workers(self) -> list[str]:
        return sorted(self.hosts)[1:]

    def write(self) -> Path:
        """Write each host's SageMaker files and the compose file; returns the compose file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        services = {}
        for host in (h for h in self.hosts if h not in self.absent_hosts):
            config_dir = self.workdir / host / "config"
            output_dir = self.workdir / host / "output"
            config_dir.mkdir(parents=True, exist_ok=True)
            output_dir.mkdir(parents=True, exist_ok=True)
            resource_config = self.raw_configs.get(host) or json.dumps(
                {
                    "current_host": host,
                    "hosts": self.hosts,
                    "network_interface_name": "eth0",
                    "current_instance_type": "local",
                }
            )
            (config_dir / "resourceconfig.json").write_text(resource_config)
            services[host] = {
                "image": self.image,
                "command": self.command,
                "environment": {"SMRAY_OBJECT_STORE_MIB": str(self.object_store_mib), **self.env},
                "volumes": [
                    f"{config_dir.resolve()}:{CONFIG_DIRS[self.kind]}",
                    f"{output_dir.resolve()}:/opt/ml/output",
                    *(
                        f"{Path(src).resolve()}:{dst}"
                        for src, dst in {**self.volumes, **self.host_volumes.get(host, {})}.items()
                    ),
                ],
                "shm_size": self.shm_size,
                "labels": {LABEL: self.project},
                "networks": {"smray": {"aliases": [host]}},
                **({"mem_limit": self.memory_limit} if self.memory_limit else {}),
            }
        compose = {
            "version": "2.4",
            "services": services,
            "networks": {"smray": {"labels": {LABEL: self.project}}},
        }
        # JSON is valid YAML, and needs no YAML library. It holds the Ray token: the owner's alone.
        fd = os.open(self.compose_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file already there keeps its mode otherwise
        with open(fd, "w") as handle:
            handle.write(json.dumps(compose, indent=2) + "\n")
        return self.compose_file

    def compose(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        cmd = [*compose_command(), "-p", self.project, "-f", str(self.compose_file), *args]
        return subprocess.run(cmd, check=check, text=True, capture_output=capture)

    def run(self) -> int:
        """Run the job the way SageMaker local mode does: the first container to exit stops the others,
        and the head's exit code is the job's."""
        self.write()
        proc = self.compose("up", "--abort-on-container-exit", "--exit-code-from", self.head, check=False)
        return proc.returncode

    def start(self) -> None:
        """Start every host in the background (tests watch and kill containers themselves)."""
        self.write()
        self.compose("up", "-d", "--no-color", capture=True)

    def follow(self) -> None:
        """Stream every host's log until all of them have exited."""
        self.compose("logs", "-f", "--no-color", check=False)

    def exit_codes(self) -> dict[str, int]:
        """Host -> exit code of its container (-1 while it still runs)."""
        ids = self.compose("ps", "-q", capture=True).stdout.split()
        if not ids:
            return {}
        fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.State.ExitCode}}'
        out = subprocess.run(
            ["docker", "inspect", "-f", fmt, *ids], capture_output=True, text=True, check=True
        )
        codes = {}
        for line in out.stdout.splitlines():
            host, status, code = line.split()
            codes[host] = int(code) if status == "exited" else -1
        return codes

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "-t", "5", check=False, capture=True)

    def failure(self, host: str) -> str | None:
        for name in ("failure", "message"):
            path = self.workdir / host / "output" / name
            if path.exists():
                return path.read_text().strip()
        return None


def new_token() -> dict[str, str]:
    return {TOKEN_ENV: secrets.token_hex(32)}


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) where present, else `docker-compose` (v1), as SageMaker local mode."""
    try:
        out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and "v2" in out.stdout:
            return ["docker", "compose"]
    except FileNotFoundError:
        pass
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise UserError("neither `docker compose` (v2) nor `docker-compose` is installed")
