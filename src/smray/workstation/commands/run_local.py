"""`smray run local`: the whole workflow on this machine, with no AWS account.

ingest -> preprocess -> train with tuning -> evaluate -> gate -> register (the SageMaker Pipeline, in
SageMaker local mode on the local Docker engine), then deploy -> approve (once it serves) -> invoke, a
summary and an HTML report. Everything lives under SMRAY_HOME (default ~/.smray, /var/opt/smray for
root; created 0700): the feature store and the registry persist between runs (a second run writes only
the records that changed); each execution writes its own folder under runs/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smray import gate, locks, paths, workflow
from smray import schema as schema_mod
from smray.registry.records import Approval
from smray.schema import Task
from smray.workstation import local_workflow as flow
from smray.workstation import tracking, validation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("local", help="the whole workflow locally (SageMaker local mode)", description=__doc__)
    add_input_arguments(p)
    add_settings_arguments(p)
    p.add_argument("--no-approve", action="store_true", help="register only; leave approval to a person")
    p.add_argument("--no-deploy", action="store_true", help="stop after registration (and approval)")
    p.set_defaults(func=run)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--input", type=Path, help=f"a CSV/Parquet file or folder (default: {flow.DEFAULT_INPUT})"
    )
    source.add_argument("--generate", type=int, metavar="ROWS", help="use ROWS synthetic houses instead")


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    d = flow.Settings()
    p.add_argument("--image", default=d.image, help=f"the smray image (default: {d.image})")
    add_gate_arguments(p)
    most = f"at most {validation.MAX_LOCAL_HOSTS}: each is a container on this machine"
    p.add_argument(
        "--processing-hosts",
        type=int,
        default=d.processing_hosts,
        help=f"hosts of ingest and preprocess ({most})",
    )
    p.add_argument(
        "--training-hosts", type=int, default=d.training_hosts, help=f"hosts of the training job ({most})"
    )
    p.add_argument("--tuning-trials", type=int, default=d.tuning_trials, help="tuning trials")
    p.add_argument("--num-round", type=int, default=d.num_round, help="boosting rounds (early stopping on)")
    p.add_argument("--endpoint", help="local endpoint to deploy to (default: the table's name)")
    p.add_argument(
        "--schema",
        type=Path,
        help="your table's schema JSON: columns, target, rules (default: the built-in housing schema)",
    )


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gate",
        default=workflow.GATE.default,
        metavar="EXPRESSION",
        help="the quality gate on the test split, a metric of evaluation.json and its direction: "
        "'accuracy >= 0.9', 'rmse <= 8000' (default: the task's, "
        + ", ".join(f"{task.value} '{gate.default(task)}'" for task in Task)
        + ")",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="the gate's threshold, for the default regression gate the highest test RMSE (default: the "
        "gate's own number; given with --gate, it must be the same)",
    )


def settings(args: argparse.Namespace) -> flow.Settings:
    """The run's settings. Every option (the input's too) and MLFLOW_TRACKING_URI are checked here,
    before anything starts."""
    if args.generate is not None:
        validation.count(args.generate, "--generate")
    tracking.server_uri()
    chosen = flow.Settings(
        image=args.image,
        threshold=args.threshold,
        gate=args.gate,
        processing_hosts=args.processing_hosts,
        training_hosts=args.training_hosts,
        tuning_trials=args.tuning_trials,
        num_round=args.num_round,
        endpoint=args.endpoint or "",
        schema=schema_mod.load(validation.regular_file(args.schema, "--schema"))
        if args.schema
        else schema_mod.housing(),
    )
    chosen = flow.checked(
        chosen, {field: "--" + field.replace("_", "-") for field in (*validation.CHECKED, "gate")}
    )
    if args.generate is None:
        flow.input_files(args.input)
    return chosen


def run(args: argparse.Namespace) -> int:
    home = paths.home()
    chosen = settings(args)
    with locks.writing_home(home, "smray run local"):
        input_dir = flow.stage_input(home, args.input, args.generate)
        print("smray run local: ", end="")
        result = flow.run_pipeline(home, input_dir, chosen)
        if result.version and not args.no_approve:
            reason = "passed the gate (smray run local)"
            if args.no_deploy:
                flow.decide(home, result, Approval.APPROVED, reason)
            else:
                flow.deploy_approve_and_invoke(home, chosen.endpoint_name, result, input_dir, reason)
        return flow.finish(result, "smray run local")
