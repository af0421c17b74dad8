"""`python -m smray.workstation.ecr --repository NAME`: make sure the account's ECR repository exists,
log Docker in to it with boto3's credentials, and print the registry host for `build.sh --ecr` to push to."""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import boto3

from smray import errors
from smray.errors import PlatformError


@dataclass(frozen=True)
class Credentials:
    registry: str  # e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com
    username: str
    password: str


def ensure_repository(ecr: Any, name: str) -> str:
    """The repository's URI, creating the repository (scan on push, immutable tags off) if missing."""
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        found = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})[
            "repository"
        ]
    return found["repositoryUri"]


def credentials(ecr: Any) -> Credentials:
    data = ecr.get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return Credentials(registry=registry, username=username, password=password)


def docker_login(creds: Credentials) -> None:
    proc = subprocess.run(
        ["docker", "login", "--username", creds.username, "--password-stdin", creds.registry],
        input=creds.password,
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PlatformError(f"docker login to {creds.registry} failed: {proc.stderr.strip()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m smray.workstation.ecr", description=__doc__)
    parser.add_argument("--repository", required=True)
    args = parser.parse_args(argv)
    try:
        ecr = boto3.client("ecr")
        uri = ensure_repository(ecr, args.repository)
        creds = credentials(ecr)
        docker_login(creds)
    except Exception as exc:
        if not errors.expected(exc):
            raise
        sys.exit(f"smray.workstation.ecr: {errors.one_line(exc)}")
    print(uri.rsplit("/", 1)[0])


if __name__ == "__main__":
    main()
