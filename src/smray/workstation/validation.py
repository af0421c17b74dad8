"""Checks of what a user hands smray, made before anything starts: `smray run local`'s options, the local
scheduler's input JSON and every endpoint name. Each raises UserError naming the option or the field as
the user wrote it, so the command line and the input file are held to the same rules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from smray.errors import UserError
from smray.schema import TABLE_NAME

if TYPE_CHECKING:
    from smray.workstation.local_workflow import Settings

# Local mode runs each host of a job as a container on this one machine, each a whole Ray node: more
# than this many only share the same cores and memory, and can exhaust them.
MAX_LOCAL_HOSTS = 16


def is_endpoint_name(name: str) -> bool:
    """SageMaker's endpoint name rule (it also keeps a name from being a path such as `../x`)."""
    return TABLE_NAME.fullmatch(name) is not None


def endpoint_name(name: Any, what: str = "endpoint name") -> str:
    if not isinstance(name, str) or not is_endpoint_name(name):
        raise UserError(
            f"{what} {name!r} is not a valid endpoint name: letters, digits and '-', starting and "
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


def count(value: Any, what: str, most: int | None = None) -> int:
    """A whole number from 1 (to `most`); 2.0 is not one, as AWS's integer parameters refuse it."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < 1 or (most is not None and value > most):
        wanted = f"a whole number from 1 to {most}" if most else "a whole number of at least 1"
        raise UserError(f"{what} must be {wanted}, got {value!r}")
    return value


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
