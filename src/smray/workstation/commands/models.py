"""`smray models`: the model registry (local, or SageMaker Model Registry with --aws)."""

from __future__ import annotations

import argparse
from typing import Any

from smray import paths
from smray.registry.records import Approval, ModelVersion
from smray.reporting import numbers
from smray.workstation import validation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, describe, approve and reject registered models")
    p.add_argument("--aws", action="store_true", help="SageMaker Model Registry instead of the local one")
    p.add_argument("--region", default=None, help="with --aws: the AWS region")
    inner = p.add_subparsers(dest="models_command", required=True)
    listing = inner.add_parser("list", help="versions, newest first")
    listing.add_argument("--group", default="housing")
    listing.set_defaults(func=cmd_list)
    for name, func in (("describe", cmd_describe), ("approve", cmd_approve), ("reject", cmd_reject)):
        q = inner.add_parser(name, help=f"{name} one version")
        q.add_argument("version", type=int)
        q.add_argument("--group", default="housing")
        if name != "describe":
            q.add_argument("--reason", default="", help="recorded with the decision")
        q.set_defaults(func=func)


def registry(args: argparse.Namespace) -> Any:
    """The registry the arguments name; the group (and version) they give are checked first."""
    validation.group_name(args.group)
    if getattr(args, "version", None) is not None:
        validation.count(args.version, "version")
    if args.aws:
        import boto3

        from smray.registry.sagemaker import SageMakerRegistry

        return SageMakerRegistry(
            boto3.client("sagemaker", region_name=args.region), boto3.client("s3", region_name=args.region)
        )
    from smray.registry.local import LocalRegistry

    return LocalRegistry(paths.home() / "registry")


def _line(v: ModelVersion) -> str:
    """The version, its status and the test value of the metric it was gated on (`accuracy 0.93`)."""
    metric = v.gate_metric()
    value = v.metric(metric) if metric else None
    shown = f"{metric} {numbers.significant(value)}" if metric and value is not None else "-"
    return f"{v.group}/{v.version:<4} {v.status.value:<22} {shown:<18}  {v.created}  {v.execution}"


def cmd_list(args: argparse.Namespace) -> int:
    versions = registry(args).versions(args.group)
    if not versions:
        print(f"no versions in group {args.group}")
    for v in versions:
        print(_line(v))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    v = registry(args).describe(args.group, args.version)
    print(_line(v))
    print(f"  artifact {v.artifact}\n  image    {v.image}\n  note     {v.description or '-'}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    print(_line(registry(args).set_status(args.group, args.version, Approval.APPROVED, args.reason)))
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    print(_line(registry(args).set_status(args.group, args.version, Approval.REJECTED, args.reason)))
    return 0
