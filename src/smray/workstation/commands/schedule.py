"""`smray schedule`: retrain on a schedule locally (the AWS retraining workflow's local twin)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from smray import paths, workflow
from smray.workstation import validation
from smray.workstation.schedule import expressions, local_loop


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule", help="retrain on a rate(...)/cron(...) schedule, deploying only better models"
    )
    inner = p.add_subparsers(dest="schedule_command", required=True)
    run = inner.add_parser(
        "run",
        help="the retraining loop, in the foreground",
        description=local_loop.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--every", required=True, metavar="EXPRESSION", help="rate(1 day), cron(0 3 ? * MON-FRI *)"
    )
    run.add_argument("--input", type=Path, required=True, help="the execution input JSON (as for AWS)")
    run.add_argument("--max-runs", type=int, default=0, help="stop after this many runs (default: never)")
    run.add_argument("--run-now", action="store_true", help="the first run now, not at the first fire time")
    run.add_argument(
        "--gate",
        default=workflow.GATE.default,
        metavar="EXPRESSION",
        help="the quality gate, 'accuracy >= 0.9' (default: the table's task's); the input's Threshold, "
        "where it has one, is its number",
    )
    run.set_defaults(func=cmd_run)
    nxt = inner.add_parser("next", help="when an expression fires next (checks it as EventBridge does)")
    nxt.add_argument("expression")
    nxt.add_argument("-n", type=int, default=5, help="how many fire times (default: 5)")
    nxt.set_defaults(func=cmd_next)
    inner.add_parser("history", help="every scheduled run's outcome, oldest first").set_defaults(
        func=cmd_history
    )


def cmd_run(args: argparse.Namespace) -> int:
    validation.count(args.max_runs, "--max-runs", least=0)  # 0: never stop
    schedule = expressions.parse(args.every)
    scheduler = local_loop.Scheduler(
        paths.home(), schedule, args.input, args.max_runs, args.run_now, args.gate
    )
    return scheduler.run()


def cmd_next(args: argparse.Namespace) -> int:
    validation.count(args.n, "-n")
    schedule = expressions.parse(args.expression)
    moment: datetime | None = datetime.now(UTC)
    for _ in range(args.n):
        moment = schedule.next_after(moment) if moment else None
        if moment is None:
            print("(never again)")
            break
        print(f"{moment:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    runs = local_loop.history(paths.home())
    if not runs:
        print("no scheduled runs yet")
    for r in runs:
        print(f"{r['started']}  {r['execution'] or '-':<13} {r['status']:<10} {r['decision']}")
    return 0
