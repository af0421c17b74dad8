"""`smray store`: the local feature store's upkeep."""

from __future__ import annotations

import argparse
from pathlib import Path

from smray import locks, paths
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.local import LocalFeatureStore
from smray.schema import TABLE_NAME
from smray.workstation import validation


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
    if not TABLE_NAME.fullmatch(args.group):  # a name, never a path out of the store
        raise UserError(f"{args.group!r} is not a feature group name (letters, digits and '-')")
    if args.store:
        store, group = _group(
            validation.folder(Path(args.store.removeprefix("file://")), "--store"), args.group
        )
        repaired = store.repair(group)
    else:
        home = paths.home()
        store, group = _group(home / "feature-store", args.group)  # before the home's lock file is made
        with locks.writing_home(home, "smray store repair"):  # the home's store: no run writes it now
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


def _group(root: Path, name: str) -> tuple[LocalFeatureStore, FeatureGroupDefinition]:
    store = LocalFeatureStore(root)
    group = store.describe(name)
    if group is None:
        raise UserError(f"feature group {name} does not exist in {root}")
    return store, group
