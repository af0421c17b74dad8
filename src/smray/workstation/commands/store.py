"""`smray store`: the local feature store's upkeep."""

from __future__ import annotations

import argparse
from pathlib import Path

from smray import paths
from smray.errors import UserError
from smray.feature_store.local import LocalFeatureStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="the local feature store: repair a group after a crash or power cut")
    inner = p.add_subparsers(dest="store_command", required=True)
    repair = inner.add_parser(
        "repair",
        help="rebuild a feature group from its readable offline files",
        description=LocalFeatureStore.repair.__doc__,
    )
    repair.add_argument(
        "--store", default=None, help="the store's folder, or file:// (default: $SMRAY_HOME/feature-store)"
    )
    repair.add_argument("group", help="the feature group, e.g. housing")
    repair.set_defaults(func=cmd_repair)


def cmd_repair(args: argparse.Namespace) -> int:
    root = Path(args.store.removeprefix("file://")) if args.store else paths.home() / "feature-store"
    store = LocalFeatureStore(root)
    group = store.describe(args.group)
    if group is None:
        raise UserError(f"feature group {args.group} does not exist in {root}")
    repaired = store.repair(group)
    for rel, why in repaired.dropped.items():
        print(f"  dropped {rel}: {why}")
    dropped = len(repaired.dropped)
    print(
        f"smray store repair: {group.name}: {dropped} offline file{'' if dropped == 1 else 's'} dropped "
        f"(unreadable ones moved to {Path(group.offline_uri) / 'damaged'}), {repaired.kept} kept "
        f"({repaired.rows:,} rows); record state rebuilt: {repaired.online:,} online records"
    )
    return 0
