"""`smray retraining`: the scheduled retraining workflow on AWS Step Functions."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from smray import workflow
from smray.errors import UserError
from smray.workstation import validation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retraining",
        help="the scheduled retraining workflow on AWS Step Functions",
        description="Prepare data -> train -> evaluate on the test split -> gate on that evaluation -> "
        "register in SageMaker Model Registry -> deploy (create or update the endpoint), started by an "
        "EventBridge schedule.",
    )
    inner = p.add_subparsers(dest="retraining_command", required=True)
    render = inner.add_parser("render", help="print the Amazon States Language definition")
    render.add_argument("--glue-job", default="", help="prepare the data with this Glue job instead")
    render.add_argument("--graph", type=Path, help="also draw the states as a PNG here")
    render.add_argument(
        "--schema",
        type=Path,
        help="the table's schema JSON: its task decides the gate's metrics, its name the default model "
        "package group (default: the built-in housing schema)",
    )
    _gate(render)
    _spot(render)
    render.set_defaults(func=cmd_render)

    deploy = inner.add_parser("deploy", help="create or update the state machine, its roles and the schedule")
    deploy.add_argument("--schedule", required=True, help="rate(1 day) or cron(0 3 ? * MON-FRI *)")
    deploy.add_argument(
        "--input", type=Path, required=True, help="the execution input JSON the schedule sends"
    )
    deploy.add_argument("--glue-job", default="")
    _gate(deploy)
    _spot(deploy)
    _aws(deploy)
    deploy.set_defaults(func=cmd_deploy)

    start = inner.add_parser("start", help="start an execution now")
    start.add_argument("--input", type=Path, required=True)
    _aws(start)
    start.set_defaults(func=cmd_start)

    executions = inner.add_parser("executions", help="recent executions, newest first, with failures")
    _aws(executions)
    executions.set_defaults(func=cmd_executions)


def _gate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        workflow.GATE.option,
        default=workflow.GATE.default,
        metavar="'METRIC >= N'",
        help="deploy only a model whose test-split metric passes this, e.g. 'accuracy >= 0.9' or "
        "'rmse <= 8000' (default: the task's default gate); the execution input's Threshold, when given, "
        "is its number",
    )


def _spot(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spot-max-wait",
        type=int,
        default=0,
        metavar="SECONDS",
        help="train with managed spot capacity, waiting up to SECONDS (at least the 24 h maximum run); an "
        "interruption resumes from the last checkpoint",
    )


def _aws(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="smray-retraining", help="state machine name")
    p.add_argument("--region", default=None)


def _names(args: argparse.Namespace) -> Any:
    import boto3

    from smray.workstation.retraining.aws import STATE_MACHINE_NAME, Names

    if not STATE_MACHINE_NAME.fullmatch(args.name):  # it names the roles and the rule too
        raise UserError(
            f"--name {args.name!r} is not a state machine name: 1 to 55 letters, digits, '-' and '_'"
        )
    session = boto3.Session(region_name=args.region)
    account = session.client("sts").get_caller_identity()["Account"]
    return session, Names(account=account, region=session.region_name, state_machine=args.name)


def _input(path: Path) -> dict[str, Any]:
    try:
        given = json.loads(validation.regular_file(path, "the execution input").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the execution input {path}: {exc}") from exc
    if not isinstance(given, dict):
        raise UserError(f"the execution input {path} is not a JSON object")
    return given


def cmd_render(args: argparse.Namespace) -> int:
    from smray import schema as schema_mod
    from smray.workstation.retraining import aws, statemachine

    if args.graph:
        validation.output_file(args.graph, "--graph")
    table = (
        schema_mod.load(validation.regular_file(args.schema, "--schema"))
        if args.schema
        else schema_mod.housing()
    )
    rule = aws.gate_of(table, args.gate, {})
    definition = statemachine.build(args.glue_job, args.spot_max_wait, rule, table.name)
    print(json.dumps(definition, indent=2))
    if args.graph:
        from smray.reporting import graph

        edges = [e for e in graph.state_machine_edges(definition) if e.label != "catch"]
        edges = _without_loops(edges, definition["StartAt"])
        nodes = {name: ("NotRun", state["Type"]) for name, state in definition["States"].items()}
        nodes["WorkflowFailed"] = ("NotRun", "Fail: any task's error")
        graph.draw(nodes, edges, args.graph, "smray retraining state machine")
    return 0


def _without_loops(edges: list[Any], start: str) -> list[Any]:
    """The edges less each loop's way back (an endpoint poll's Count -> Poll): the picture is laid out
    left to right along the longest path, which a cycle would stretch without end."""
    back: set[Any] = set()
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        path.append(node)
        for e in edges:
            if e.source == node and e.target in path:
                back.add(e)
            elif e.source == node and e.target not in done:
                visit(e.target)
        path.pop()
        done.add(node)

    visit(start)
    return [e for e in edges if e not in back]


def cmd_deploy(args: argparse.Namespace) -> int:
    from smray.workstation.retraining import aws

    execution_input = _input(args.input)
    session, names = _names(args)
    clients = {s: session.client(s) for s in ("iam", "stepfunctions", "events", "s3", "sagemaker")}
    made = aws.deploy(
        clients, names, args.schedule, execution_input, args.glue_job, args.spot_max_wait, args.gate
    )
    for key, arn in made.items():
        print(f"{key:<19} {arn}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from smray.workstation.retraining import aws

    execution_input = _input(args.input)
    session, names = _names(args)
    arn = aws.start(
        session.client("stepfunctions"),
        names.state_machine_arn,
        execution_input,
        f"manual-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    print(f"execution started: {arn}")
    return 0


def cmd_executions(args: argparse.Namespace) -> int:
    from smray.workstation.retraining import aws

    session, names = _names(args)
    for e in aws.executions(session.client("stepfunctions"), names.state_machine_arn):
        failure = f"  {e['error']}: {e['cause']}" if e["error"] else ""
        print(f"{e['started']}  {e['name']:<32} {e['status']}{failure}")
    return 0
