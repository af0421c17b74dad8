"""`smray deploy`, `smray invoke` and `smray endpoints`: approved models behind endpoints."""

from __future__ import annotations

import argparse
import http.client
import json
from pathlib import Path

from smray import locks, paths
from smray.contracts import payload
from smray.errors import PlatformError, UserError
from smray.registry.records import Approval
from smray.workstation import tracking, validation
from smray.workstation.commands.models import registry
from smray.workstation.endpoints.client import Connection
from smray.workstation.endpoints.local import LocalEndpoints


def add_parsers(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser(
        "deploy",
        help="serve an approved model version at an endpoint (create, or update without downtime)",
        description="Locally: runs the version's serve container behind the endpoint's router; an existing "
        "endpoint switches to the new version once it answers /ping, without dropping requests. With --aws: "
        "model, endpoint config, and CreateEndpoint or UpdateEndpoint.",
    )
    deploy.add_argument("--name", default="housing", help="endpoint name (default: housing)")
    deploy.add_argument("--group", default="housing", help="model package group (default: housing)")
    deploy.add_argument("--version", type=int, help="version to deploy (default: the newest approved)")
    deploy.add_argument("--port", type=int, default=0, help="local: the endpoint's port (default: any free)")
    deploy.add_argument("--image", default="", help="local: serve with this image (default: the version's)")
    deploy.add_argument("--aws", action="store_true", help="deploy to SageMaker")
    deploy.add_argument("--region", default=None)
    deploy.add_argument("--role", default="", help="with --aws: the model's execution role ARN")
    deploy.add_argument("--instance-type", default="ml.m5.large")
    deploy.set_defaults(func=cmd_deploy)

    invoke = sub.add_parser("invoke", help="send a CSV/JSON file to an endpoint and print the predictions")
    invoke.add_argument("endpoint", help="a local endpoint's name, or a URL such as http://127.0.0.1:8080")
    invoke.add_argument("file", type=Path, help="rows of raw features")
    invoke.add_argument("--content-type", default="", help="default: from the file's extension")
    invoke.add_argument("--accept", default="", help="text/csv or application/json (default: as sent)")
    invoke.set_defaults(func=cmd_invoke)

    endpoints = sub.add_parser("endpoints", help="list or delete local endpoints")
    inner = endpoints.add_subparsers(dest="endpoints_command", required=True)
    inner.add_parser("list", help="local endpoints and what they serve").set_defaults(func=cmd_list)
    delete = inner.add_parser("delete", help="stop and remove a local endpoint")
    delete.add_argument("name")
    delete.set_defaults(func=cmd_delete)


def cmd_deploy(args: argparse.Namespace) -> int:
    validation.endpoint_name(args.name, "--name")  # the local store checks it too, but --aws has none
    validation.count(args.port, "--port", 65535, least=0)  # 0: any free port
    if args.aws and not args.role:
        raise UserError("--aws needs --role (the model's execution role ARN)")
    found = registry(args)
    if args.version is None:
        version = found.latest(args.group, Approval.APPROVED)
        if version is None:
            raise UserError(
                f"no approved version in group {args.group}: `smray models approve VERSION` first"
            )
    else:
        version = found.describe(args.group, args.version)
        if version.status is not Approval.APPROVED:
            raise UserError(f"{args.group}/{args.version} is {version.status.value}, not Approved")
    if args.aws:
        import boto3

        from smray.workstation.endpoints import sagemaker

        client = boto3.client("sagemaker", region_name=args.region)
        action = sagemaker.deploy(client, args.name, version, args.role, args.instance_type)
        print(f"endpoint {args.name}: {action} with {version.group}/{version.version}")
        return 0
    with locks.writing_home(paths.home(), "smray deploy"):
        endpoint = LocalEndpoints(paths.home()).deploy(args.name, version, image=args.image, port=args.port)
    print(f"endpoint {endpoint.name} at {endpoint.url} serves {endpoint.model} ({endpoint.container})")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    url = args.endpoint
    if url.startswith(("http://", "https://")):
        tracking.check_url(url, "endpoint URL")
    else:
        endpoint = LocalEndpoints(paths.home()).describe(url)
        if endpoint is None:
            raise UserError(f"no local endpoint named {url}")
        url = endpoint.url
    validation.regular_file(args.file, "rows file")  # a FIFO's read would wait for a writer
    kinds = {".csv": payload.CSV, ".json": payload.JSON, ".jsonl": payload.JSONLINES}
    content_type = args.content_type or kinds.get(args.file.suffix.lower(), "")
    if not content_type:
        raise UserError(f"cannot tell the content type of {args.file}: pass --content-type")
    for option, value in (("--content-type", content_type), ("--accept", args.accept)):
        if not value.isprintable():  # a line break would end the header and start another
            raise UserError(f"{option} {value!r} is not a media type")
    try:
        body = args.file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {args.file}: {exc}") from exc
    try:
        answer = Connection(url).invoke(body, content_type, args.accept)
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, not HTTP
        raise PlatformError(f"{tracking.redact(url)} did not answer: {exc}") from exc
    if answer.status != 200:
        raise UserError(
            f"{tracking.redact(url)} answered {answer.status}: {answer.body.decode(errors='replace').strip()}"
        )
    text = answer.body.decode()
    print(json.dumps(json.loads(text), indent=2) if answer.content_type == payload.JSON else text, end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    found = LocalEndpoints(paths.home()).list()
    if not found:
        print("no local endpoints")
    for e in found:
        print(f"{e.name:<16} {e.url:<26} {e.model:<14} updated {e.updated}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    # before the home is touched (its lock file): a name that climbs out, no such endpoint, a corrupt record
    if LocalEndpoints(paths.home()).describe(args.name) is None:
        raise UserError(f"no local endpoint named {args.name}")
    with locks.writing_home(paths.home(), "smray endpoints delete"):
        LocalEndpoints(paths.home()).delete(args.name)
    print(f"endpoint {args.name} deleted")
    return 0
