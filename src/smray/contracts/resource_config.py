"""SageMaker's resource config: which hosts form this job, which one we are, and which one leads.

SageMaker writes it to `/opt/ml/input/config/resourceconfig.json` in Training jobs and to
`/opt/ml/config/resourceconfig.json` in Processing jobs. Outside SageMaker (a laptop, a plain
`docker run`) neither exists and the job is a single local host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from smray import paths
from smray.errors import UserError

LOCAL_HOST = "algo-1"


class JobKind(Enum):
    TRAINING = "training"
    PROCESSING = "processing"
    LOCAL = "local"


@dataclass(frozen=True)
class InstanceGroup:
    name: str
    instance_type: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class ResourceConfig:
    current_host: str
    hosts: tuple[str, ...]  # sorted: every host computes the same order, and so the same head
    kind: JobKind
    network_interface: str | None = None
    instance_type: str | None = None
    instance_groups: tuple[InstanceGroup, ...] = ()

    @property
    def head(self) -> str:
        return self.hosts[0]

    @property
    def is_head(self) -> bool:
        return self.current_host == self.head

    @property
    def workers(self) -> tuple[str, ...]:
        return self.hosts[1:]


def local() -> ResourceConfig:
    return ResourceConfig(current_host=LOCAL_HOST, hosts=(LOCAL_HOST,), kind=JobKind.LOCAL)


def job_kind() -> JobKind:
    """Training if SageMaker wrote a training resource config, processing if a processing one, else local."""
    if paths.training_resource_config().exists():
        return JobKind.TRAINING
    if paths.processing_resource_config().exists():
        return JobKind.PROCESSING
    return JobKind.LOCAL


def discover() -> ResourceConfig:
    """The job's resource config: training's if present, else processing's, else one local host."""
    kind = job_kind()
    if kind is JobKind.TRAINING:
        return load(paths.training_resource_config(), kind)
    if kind is JobKind.PROCESSING:
        return load(paths.processing_resource_config(), kind)
    return local()


def load(path: Path, kind: JobKind) -> ResourceConfig:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read resource config {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"resource config {path} is not valid JSON: {exc}") from exc
    return parse(raw, kind, source=str(path))


def parse(raw: object, kind: JobKind, source: str = "resource config") -> ResourceConfig:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    current = _host_name(raw.get("current_host"), f"{source}: current_host")
    hosts_raw = raw.get("hosts")
    if not isinstance(hosts_raw, list) or not hosts_raw:
        raise UserError(f"{source}: hosts must be a non-empty list of host names")
    hosts = [_host_name(h, f"{source}: hosts[{i}]") for i, h in enumerate(hosts_raw)]
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise UserError(f"{source}: hosts lists {', '.join(duplicates)} more than once")
    if current not in hosts:
        raise UserError(f"{source}: current_host {current!r} is not in hosts {sorted(hosts)}")
    groups = tuple(_group(g, source, set(hosts)) for g in raw.get("instance_groups") or ())
    return ResourceConfig(
        current_host=current,
        hosts=tuple(sorted(hosts)),
        kind=kind,
        network_interface=raw.get("network_interface_name"),
        instance_type=raw.get("current_instance_type"),
        instance_groups=groups,
    )


def _host_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{what} must be a non-empty host name, got {value!r}")
    return value.strip()


def _group(raw: object, source: str, known_hosts: set[str]) -> InstanceGroup:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: each instance_groups entry must be an object")
    name = raw.get("instance_group_name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{source}: an instance group has no instance_group_name")
    hosts = raw.get("hosts")
    if not isinstance(hosts, list):
        raise UserError(f"{source}: instance group {name!r} has no hosts list")
    group_hosts = tuple(sorted(_host_name(h, f"{source}: group {name!r} host") for h in hosts))
    unknown = sorted(set(group_hosts) - known_hosts)
    if unknown:
        raise UserError(f"{source}: instance group {name!r} names hosts not in hosts: {', '.join(unknown)}")
    return InstanceGroup(name=name, instance_type=str(raw.get("instance_type", "")), hosts=group_hosts)
