"""`smray run aws`: create or update the pipeline in SageMaker and start an execution; `smray pipeline
show` prints the definition as SageMaker stores it."""

from __future__ import annotations

import argparse
import json
import re
import secrets
from pathlib import Path
from typing import Any

from smray import gate, workflow
from smray import schema as schema_mod
from smray.contracts import train as train_contract
from smray.errors import UserError
from smray.gate import GateRule
from smray.schema import Schema
from smray.workstation import validation

BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's rule for a general purpose bucket's name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aws",
        help="upsert the SageMaker Pipeline and start it",
        description="Creates or updates the smray-housing pipeline (TuningStep, ModelStep into the Model "
        "Registry) with your image and role, then starts an execution unless --upsert-only. Parameters "
        "not given keep the definition's defaults (under s3://BUCKET/smray/).",
    )
    add_target_arguments(p)
    p.add_argument(
        "--upsert-only", action="store_true", help="create or update the pipeline, do not start it"
    )
    p.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter (repeatable)",
    )
    p.set_defaults(func=run)


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="the smray image in ECR (build.sh --ecr prints it)")
    p.add_argument("--role", required=True, help="SageMaker execution role ARN")
    p.add_argument("--bucket", required=True, help="S3 bucket for data, runs and the offline store")
    p.add_argument("--region", default=None, help="AWS region (default: from your AWS configuration)")
    p.add_argument("--instance-type", default="ml.m5.xlarge", help="processing and training instances")
    p.add_argument(
        "--schema",
        type=Path,
        help="your table's schema JSON (default: the built-in housing schema); its name names the feature "
        "group and the model package group",
    )
    p.add_argument(
        "--gate",
        default=workflow.GATE.default,
        metavar="EXPRESSION",
        help="the quality gate, a metric of evaluation.json and its direction: 'accuracy >= 0.9' (default: "
        "the table's task's); its number is the default of the parameter Threshold",
    )
    p.add_argument(
        "--spot-max-wait",
        type=int,
        default=0,
        metavar="SECONDS",
        help="train (and tune) with managed spot capacity, waiting up to SECONDS (at least the 24 h maximum "
        "run); an interruption resumes from the last checkpoint",
    )


def build_pipeline(args: argparse.Namespace, table: Schema, rule: GateRule | None = None) -> Any:
    """The pipeline for `table`, gated by `rule` (default: the table's task's default gate)."""
    from smray.workstation.pipeline import definition

    session = definition.aws_session(args.region, args.bucket)
    base = f"s3://{args.bucket}/smray"
    target = definition.Target(
        name="aws",
        image=args.image,
        role=args.role,
        ray_token=secrets.token_urlsafe(24),
        processing_instance_type=args.instance_type,
        training_instance_type=args.instance_type,
        model_package_group=table.name,
        defaults={
            "InputDataUrl": f"{base}/input/",
            "OutputUrl": f"{base}/runs",
            "FeatureStoreUrl": f"{base}/offline-store",
            "SchemaUrl": f"s3://{args.bucket}/{_schema_prefix(table)}",
            "FeatureGroupName": table.name,
        },
        spot_max_wait_s=args.spot_max_wait,
        gate=rule or gate.default(table.task),
    )
    return definition.build(target, session)


def _checked(args: argparse.Namespace, threshold: str | None = None) -> tuple[Schema, GateRule]:
    """Every target argument, before any AWS call; returns the table's schema and the pipeline's gate.
    `threshold`: the execution's parameter Threshold, where one is given (it may not contradict
    --gate)."""
    validation.text(args.image, "--image")
    if not BUCKET.fullmatch(args.bucket):
        raise UserError(
            f"--bucket {args.bucket!r} is not an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'"
        )
    train_contract.check_max_wait(args.spot_max_wait)
    table = (
        schema_mod.load(validation.regular_file(args.schema, "--schema"))
        if args.schema
        else schema_mod.housing()
    )
    rule = workflow.gate_rule(table.task, args.gate)
    validation.threshold(rule.threshold, "the threshold of --gate")
    if threshold is not None:
        try:
            number = float(threshold)
        except ValueError:
            raise UserError(f"--parameter Threshold={threshold} is not a number") from None
        validation.threshold(number, "--parameter Threshold")
        workflow.refuse_two_thresholds(table.task, args.gate, number, ("--gate", "--parameter Threshold"))
    return table, rule


def _schema_prefix(table: Schema) -> str:
    """Where the pipeline's SchemaUrl default points, under the bucket: smray/schemas/<name>/."""
    return f"smray/schemas/{table.name}/"


def upload_schema(bucket: str, table: Schema, s3: Any) -> str:
    from smray.contracts.jobs import SCHEMA_FILE

    key = _schema_prefix(table) + SCHEMA_FILE
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=table.dumps().encode())
    except s3.exceptions.NoSuchBucket:
        raise UserError(f"bucket {bucket} does not exist: create it, or name yours with --bucket") from None
    return f"s3://{bucket}/{key}"


def run(args: argparse.Namespace) -> int:
    import boto3

    parameters = dict(_pair(text) for text in args.parameter)
    table, rule = _checked(args, parameters.get("Threshold"))
    pipeline = build_pipeline(args, table, rule)
    s3 = boto3.Session(region_name=args.region).client("s3")
    print(f"schema: {upload_schema(args.bucket, table, s3)}")
    known = {p.name for p in pipeline.parameters}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise UserError(f"unknown pipeline parameter(s) {unknown}: the pipeline has {sorted(known)}")
    response = pipeline.upsert(role_arn=args.role)
    print(f"pipeline {pipeline.name}: {response['PipelineArn']}")
    if args.upsert_only:
        return 0
    execution = pipeline.start(parameters=parameters)
    print(f"execution started: {execution.arn}")
    return 0


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UserError(f"--parameter expects NAME=VALUE, got {text!r}")
    return name, value


def show(args: argparse.Namespace) -> int:
    print(json.dumps(json.loads(build_pipeline(args, *_checked(args)).definition()), indent=2))
    return 0
