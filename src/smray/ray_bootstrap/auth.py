"""Ray token authentication for the job's cluster.

The token comes from the job's configuration (the SMRAY_RAY_TOKEN environment variable, which the
pipeline sets on every step) and is handed to every Ray process through RAY_AUTH_TOKEN with
RAY_AUTH_MODE=token, so a process without it is refused by the cluster. A single-host job needs no
shared secret: it makes a random one.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from smray.contracts.cluster import TOKEN_ENV
from smray.errors import UserError

MIN_TOKEN_LENGTH = 16


def cluster_token(env: Mapping[str, str], host_count: int) -> str:
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise UserError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters long")
        return token
    if host_count > 1:
        raise UserError(
            f"{TOKEN_ENV} is not set: a {host_count}-host job needs the same secret token on every host "
            "(set it in the job's environment)"
        )
    # Ray keeps the first token it saw for the life of the process: reuse it for a second local run.
    return env.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)


def ray_env(token: str) -> dict[str, str]:
    """Environment variables that make a Ray process require and present the token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
