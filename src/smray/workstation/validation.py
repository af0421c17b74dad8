"""Checks of what a user hands smray, made before anything starts: every command's options and files, the
local scheduler's input JSON, every endpoint and group name, and the records smray reads back. Each
raises UserError naming the option or the field as the user wrote it, so the command line and the input
file are held to the same rules."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from smray.errors import UserError
from smray.schema import TABLE_NAME

if TYPE_CHECKING:
    from smray.workstation.local_workflow import Settings

# Local mode runs each host of a job as a container on this one machine, each a whole Ray node: more
# than this many only share the same cores and memory, and can exhaust them.
MAX_LOCAL_HOSTS = 16


def is_endpoint_name(name: str) -> bool:
    """SageMaker's name rule for endpoints and groups (it keeps a name from being a path such as `../x`)."""
    return TABLE_NAME.fullmatch(name) is not None


def endpoint_name(name: Any, what: str = "endpoint name") -> str:
    return _sagemaker_name(name, what, "endpoint")


def group_name(name: str, what: str = "--group") -> str:
    """A model package group's name (the local registry's folders are named by it)."""
    return _sagemaker_name(name, what, "group")


def _sagemaker_name(name: Any, what: str, kind: str) -> str:
    """SageMaker's rule for endpoint, model package group and job names."""
    if not isinstance(name, str) or not is_endpoint_name(name):
        raise UserError(
            f"{what} {name!r} is not a valid {kind} name: letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters"
        )
    return name


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise UserError(f"{what} must be a non-empty string, got {value!r}")
    return value


def threshold(value: Any, what: str) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a finite number above 0, got {value!r}")
    return float(value)


def count(value: Any, what: str, most: int | None = None, least: int = 1) -> int:
    """A whole number from `least` (to `most`); 2.0 is not one, as AWS's integer parameters refuse it."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < least or (most is not None and value > most):
        wanted = f"from {least} to {most}" if most is not None else f"of at least {least}"
        raise UserError(f"{what} must be a whole number {wanted}, got {value!r}")
    return value


def regular_file(path: Path, what: str) -> Path:
    """A file to read: not a folder, nor a FIFO or device (whose read would wait for a writer)."""
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    return path


def folder(path: Path, what: str) -> Path:
    """A folder to write in: there, or one that can be made (no file in the way of it or its parents)."""
    blocked = _in_the_way(path)
    if blocked == path:
        raise UserError(f"{what} {path} is not a folder")
    if blocked:
        raise UserError(f"{what} {path}: {blocked} is not a folder")
    return path


def output_file(path: Path, what: str) -> Path:
    """A file to write: a file there already, or a name in a folder that is there or can be made."""
    if path.exists() and not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    blocked = _in_the_way(path.parent)
    if blocked:
        raise UserError(f"{what} {path}: {blocked} is not a folder")
    return path


def _in_the_way(path: Path) -> Path | None:
    """What keeps folder `path` from being made: the nearest of it and its parents there, if no folder."""
    there = next((at for at in (path, *path.parents) if at.exists()), None)
    return there if there is not None and not there.is_dir() else None


T = TypeVar("T")


def record(cls: type[T], raw: dict[str, Any]) -> T:
    """The dataclass `cls` from a record read back (a JSON object): TypeError for a missing or unknown
    field, or a value of another type than the field's annotation, which the caller names with its file."""
    made = cls(**raw)
    for name, hint in typing.get_type_hints(cls).items():
        value = getattr(made, name)
        if not _fits(value, hint):
            raise TypeError(f"{name} is {value!r}")
    return made


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if hint is float:  # JSON writes 2.0 as 2
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint) and not (isinstance(value, bool) and hint is int)


CHECKED = (
    "image",
    "threshold",
    "processing_hosts",
    "training_hosts",
    "tuning_trials",
    "num_round",
    "endpoint",
)


def settings(chosen: Settings, names: Mapping[str, str]) -> Settings:
    """Every setting of a local run but its schema (checked as it is read); `names` maps each field in
    CHECKED to what the user calls it."""
    text(chosen.image, names["image"])
    # as a float: local mode refuses a whole number for the pipeline's Float parameter Threshold
    chosen = replace(chosen, threshold=threshold(chosen.threshold, names["threshold"]))
    for field in ("processing_hosts", "training_hosts"):
        count(getattr(chosen, field), names[field], MAX_LOCAL_HOSTS)
    for field in ("tuning_trials", "num_round"):
        count(getattr(chosen, field), names[field])
    if chosen.endpoint:  # else the schema's name, checked by the same rule when the schema was read
        endpoint_name(chosen.endpoint, names["endpoint"])
    return chosen
