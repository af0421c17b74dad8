"""`preprocess`: feature group -> train / validation / test, with Ray Data across the job's hosts.

Reads the committed files of the offline store, keeps the latest record per id as of a given time (a
record deleted by then is gone), splits by the given fractions with a seeded hash of the record id (no
global shuffle: on two cores Ray Data's 200-way hash shuffle cost 5-15 s for 2,000 rows), and learns in
one streaming pass, from the train split only: a StandardScaler (mean, population standard deviation) of
the numeric features, the categories of each string feature and, for a classification, the label set.
Writes each split encoded (`Transform.apply`: standardized numbers, category codes, NaN for a missing
value or an unseen category; the target a number or its label's position) as Parquet (and CSV with a
header on request), and the fitted preprocessing (schema, scaler, categories, labels) as an artifact that
travels with the model. A row without a target, or a validation or test row whose label the train split
never had, cannot be trained on or scored: it is left out, and counted in the report and the step's line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from smray import schema as schema_mod
from smray import tables
from smray.contracts import preprocess as contract
from smray.contracts.jobs import processing_root
from smray.contracts.resource_config import ResourceConfig
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.history import DownloadedOfflineStore, OfflineHistory
from smray.feature_store.local import LocalFeatureStore
from smray.feature_store.record_state import latest_versions
from smray.ray_bootstrap.object_store import MIB
from smray.schema import Schema
from smray.transform import Scale, Transform, as_text, category_set, label_set

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

SPLITS = contract.SPLITS
IN_PROCESS_MIB = 32  # default of --in-process-mib: 1M rows of the generated table are 37 MB
MIN_BUCKETS = 8  # record buckets of the latest-record selection (2 hosts of 2 cores had 8)
BUCKET_BYTES = 128 * MIB  # of offline files per bucket, above 8 buckets: a task's share
FRACTION_TOLERANCE = 1e-6


def parser() -> argparse.ArgumentParser:
    proc = processing_root()
    p = argparse.ArgumentParser(prog="smray-entrypoint preprocess", description=__doc__)
    p.add_argument(
        "--store", default=str(proc / contract.STORE), help="local feature store root (or file://)"
    )
    p.add_argument("--feature-group", default="housing")
    p.add_argument("--schema", type=Path, help="schema JSON (default: the one ingest kept with the group)")
    p.add_argument(
        "--offline-files", type=Path, help="a downloaded SageMaker offline store (instead of --store)"
    )
    p.add_argument(
        "--output", type=Path, default=proc / contract.OUTPUT, help="writes train/ validation/ test/ here"
    )
    p.add_argument(
        "--transform-output", type=Path, default=proc / contract.TRANSFORM, help="preprocessing.json here"
    )
    p.add_argument("--report", type=Path, default=proc / contract.REPORT / contract.REPORT_FILE)
    p.add_argument("--as-of", help="latest records as of this ISO-8601 time (default: now)")
    p.add_argument("--train-size", type=float, default=0.6)
    p.add_argument("--validation-size", type=float, default=0.2)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--csv", action="store_true", help="also write each split as CSV with a header")
    p.add_argument(
        "--in-process-mib",
        type=float,
        default=IN_PROCESS_MIB,
        help="offline files up to this size are read in the job's process, not by Ray tasks on every host, "
        "whose first start takes seconds (0: always by Ray tasks)",
    )
    return p


def check_fractions(train: float, validation: float, test: float) -> list[float]:
    fractions = [train, validation, test]
    for name, value in zip(SPLITS, fractions, strict=True):
        if not (value > 0) or math.isinf(value):
            raise UserError(f"the {name} fraction must be positive, got {value:g}")
    if abs(sum(fractions) - 1.0) > FRACTION_TOLERANCE:
        raise UserError(
            f"train/validation/test fractions must sum to 1, got {' + '.join(map(str, fractions))}"
        )
    return fractions


def split_of(ids: pd.Series, seed: int, fractions: list[float]) -> pd.Series:
    """Each record's split from a seeded hash of its id: reproducible without a global shuffle, and a
    record keeps its split when the data grows (a retrained model meets the same test records)."""
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False, hash_key=f"smray{seed:011d}"[-16:])
    u = hashed.to_numpy().astype("float64") / 2.0**64
    bounds = [fractions[0], fractions[0] + fractions[1]]
    return pd.Series(pd.cut(u, [-1.0, *bounds, 2.0], labels=list(SPLITS)).astype(str), index=ids.index)


def bucket_of(ids: pd.Series, buckets: int) -> np.ndarray:
    """A record's bucket from a fixed hash of its id: every version of a record meets in one bucket."""
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False, hash_key="smray-buckets-v1")
    return (hashed.to_numpy() % np.uint64(buckets)).astype("int64")


def read_into_buckets(
    paths: list[str], buckets: int, record_id: str, event_time: str, as_of: float
) -> list[pa.Table]:
    """One reading task: its files' versions up to `as_of`, cut into the record buckets."""
    table = _read_group(paths)
    table = table.filter(pc.less_equal(table[event_time], as_of))
    bucket = bucket_of(table[record_id].to_pandas(), buckets)
    return [table.filter(pa.array(bucket == b)) for b in range(buckets)]


def latest_live(
    *parts: pa.Table, schema: Schema, record_id: str, event_time: str, seed: int, fractions: list[float]
) -> pd.DataFrame:
    """One bucket's task: of every version of its records, each record's latest (a delete drops it),
    its numeric columns as float64 and its text columns (string features, labels) as text, with the
    record's split."""
    versions = pa.concat_tables(parts, promote_options="permissive").to_pandas()
    latest = latest_versions(versions, record_id, event_time)
    kinds = {c: "float64" for c in schema.numeric_columns} | {c: "str" for c in schema.text_columns}
    out = latest[schema.value_columns].astype(kinds).reset_index(drop=True)
    out["split"] = split_of(latest[record_id], seed, fractions).to_numpy()
    return out


def live_records(
    files: list[Path],
    schema: Schema,
    group: FeatureGroupDefinition,
    as_of: float,
    seed: int,
    fractions: list[float],
    in_process_bytes: float = 0,
) -> ray.data.Dataset:
    """Each record's latest version as of `as_of`, by an exchange of Ray tasks: reading tasks (a few
    files each: a task per small file cost 21.7 s for 108 files here, against 2.1 s) cut their rows into
    buckets by record id, and one task a bucket keeps the latest version of each of its records. Nothing
    proportional to the table passes through the driver or travels as an argument (object references
    only), and each task holds only its share of the table. Offline files of up to `in_process_bytes` go
    through the same buckets in the job's own process instead: the same rows in the same order, without
    the seconds that Ray's first tasks on each host take to start."""
    import ray

    options = {
        "schema": schema,
        "record_id": group.record_id,
        "event_time": group.event_time,
        "seed": seed,
        "fractions": fractions,
    }
    size = sum(f.stat().st_size for f in files)
    # As many buckets as the table's size asks for, not the cluster's: any number of hosts then selects
    # the same rows in the same order (the same splits, the same model).
    buckets = max(MIN_BUCKETS, math.ceil(size / BUCKET_BYTES))
    if size <= in_process_bytes:
        cut = read_into_buckets([str(f) for f in files], buckets, group.record_id, group.event_time, as_of)
        # One block: each block's first task on a cold worker costs seconds too.
        return ray.data.from_pandas(pd.concat([latest_live(part, **options) for part in cut]))
    readers = max(1, min(len(files), 2 * int(ray.cluster_resources().get("CPU", 1))))
    groups = [files[i * len(files) // readers : (i + 1) * len(files) // readers] for i in range(readers)]
    read = ray.remote(num_returns=buckets)(read_into_buckets)
    cut = [
        read.remote([str(f) for f in g], buckets, group.record_id, group.event_time, as_of) for g in groups
    ]
    keep = ray.remote(latest_live)
    return ray.data.from_pandas_refs(
        [keep.remote(*(parts[b] for parts in cut), **options) for b in range(buckets)]
    )


def moments(batch: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per-batch count, mean and sum of squared deviations of each column (merged with Chan's formula)."""
    values = batch[columns].to_numpy(dtype="float64")
    n = np.count_nonzero(~np.isnan(values), axis=0)
    with np.errstate(over="ignore"):  # an overflow shows as inf, which merge_moments refuses by name
        mean = np.nanmean(values, axis=0) if len(values) else np.zeros(len(columns))
        m2 = np.nansum((values - mean) ** 2, axis=0)
    return pd.DataFrame({"column": columns, "n": n, "mean": mean, "m2": m2})


# What `survey` finds, one row each: (split, kind, column, value, n, mean, m2). Kinds: a split's rows; its
# rows without a target; its rows of one label (value); and of the train split only, a numeric feature's
# moments and a string feature's category (value). `value` is "" where a kind has none (no label is "").
ROWS, NO_TARGET, LABEL, MOMENTS, CATEGORY = "rows", "no_target", "label", "moments", "category"
SURVEY_COLUMNS = ["split", "kind", "column", "value", "n", "mean", "m2"]


def survey(batch: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """One batch's share of what preprocess learns in its one pass over the live records: per split its
    rows, rows without a target and, for a classification, rows per label; of the train split only, the
    numeric features' moments and the string features' categories. Small whatever the batch's size."""
    target, split = schema.target, batch["split"]
    found = [_survey_rows(ROWS, "", split.value_counts())]
    if schema.task.classification:  # a label's rows; then those without a label (as_text's None)
        counts = batch.groupby(["split", target], dropna=False, observed=True).size().reset_index(name="n")
        counts["label"] = as_text(counts[target]).to_numpy()
        labelled = counts.dropna(subset=["label"])
        found.append(
            pd.DataFrame(
                {"split": labelled["split"], "kind": LABEL, "column": target, "value": labelled["label"]}
            ).assign(n=labelled["n"].to_numpy())
        )
        found.append(
            _survey_rows(NO_TARGET, target, counts[counts["label"].isna()].groupby("split")["n"].sum())
        )
    else:
        found.append(_survey_rows(NO_TARGET, target, split[batch[target].isna()].value_counts()))
    train = batch[split.to_numpy() == "train"]
    found.append(moments(train, numeric_features(schema)).assign(split="train", kind=MOMENTS, value=""))
    for feature in schema.categorical:
        seen = as_text(pd.Series(train[feature].unique())).dropna()
        found.append(
            pd.DataFrame({"split": "train", "kind": CATEGORY, "column": feature, "value": seen, "n": 0})
        )
    out = pd.concat(found, ignore_index=True).reindex(columns=SURVEY_COLUMNS)
    return out.astype({"split": "str", "kind": "str", "column": "str", "value": "str", "n": "int64"})


def numeric_features(schema: Schema) -> list[str]:
    """The features the scaler standardizes: all but the string ones."""
    categorical = set(schema.categorical)
    return [f for f in schema.feature_names if f not in categorical]


def _survey_rows(kind: str, column: str, counts: pd.Series) -> pd.DataFrame:
    """`survey` rows of one kind from counts per split."""
    return pd.DataFrame(
        {
            "split": counts.index.astype(str),
            "kind": kind,
            "column": column,
            "value": "",
            "n": counts.to_numpy(),
        }
    )


@dataclass(frozen=True)
class Learned:
    """What the survey of every batch tells: the fitted transform, and per split its live records and the
    rows left out of it (without a target, or with a label the train split never had: neither can be
    trained on nor scored)."""

    transform: Transform
    records: dict[str, int]
    no_target: dict[str, int]
    unseen_label: dict[str, int]

    @property
    def kept(self) -> dict[str, int]:
        return {n: self.records[n] - self.no_target[n] - self.unseen_label[n] for n in SPLITS}


def learn(found: pd.DataFrame, schema: Schema) -> Learned:
    """The transform fitted on the train split's survey rows, and the splits' counts."""

    def per_split(rows: pd.DataFrame) -> dict[str, int]:
        sums = rows.groupby("split")["n"].sum()
        return {name: int(sums.get(name, 0)) for name in SPLITS}

    kind = found["kind"]
    scale = merge_moments(found[kind == MOMENTS], numeric_features(schema))
    categories = {
        f: category_set(found["value"][(kind == CATEGORY) & (found["column"] == f)])
        for f in schema.categorical
    }
    labels: tuple[str, ...] = ()
    unseen = dict.fromkeys(SPLITS, 0)
    if schema.task.classification:
        labelled = found[kind == LABEL]
        labels = label_set(labelled["value"][labelled["split"] == "train"], schema.task, schema.positive)
        unseen = per_split(labelled[~labelled["value"].isin(labels)])
    return Learned(
        transform=Transform(schema, scale, categories, labels),
        records=per_split(found[kind == ROWS]),
        no_target=per_split(found[kind == NO_TARGET]),
        unseen_label=unseen,
    )


def merge_moments(parts: pd.DataFrame, columns: list[str]) -> dict[str, Scale]:
    scale = {}
    for column in columns:
        n_total, mean, m2 = 0, 0.0, 0.0
        for row in parts[parts["column"] == column].itertuples():
            if row.n == 0:
                continue
            delta = row.mean - mean
            n_new = n_total + row.n
            mean += delta * row.n / n_new
            m2 += row.m2 + delta**2 * n_total * row.n / n_new
            n_total = n_new
        if n_total == 0:
            raise UserError(f"cannot standardize {column}: the training split has no values for it")
        if not (math.isfinite(mean) and math.isfinite(m2)):
            raise UserError(f"cannot standardize {column}: its values overflow float64 (not finite)")
        scale[column] = Scale(mean, math.sqrt(m2 / n_total))
    return scale


def _offline_files(opts: argparse.Namespace) -> tuple[FeatureGroupDefinition, Schema, list[Path]]:
    """The group, the schema its data was ingested with (--schema, else the one the store keeps with the
    group) and its offline files, from whichever store the job has."""
    given = schema_mod.load(opts.schema) if opts.schema else None
    store: OfflineHistory
    if opts.offline_files:
        if given is None:
            raise UserError("--offline-files needs --schema: a SageMaker offline store keeps no target")
        store, where = DownloadedOfflineStore(opts.offline_files, given), opts.offline_files
    else:
        store = LocalFeatureStore(Path(str(opts.store).removeprefix("file://")))
        where = store.root
    group = store.describe(opts.feature_group)
    if group is None:
        raise UserError(f"feature group {opts.feature_group} does not exist in {where}: run ingest first")
    schema = given or store.schema(group.name)
    if schema is None:
        raise UserError(f"feature group {group.name} keeps no schema (an older smray made it): use --schema")
    group.check_matches(FeatureGroupDefinition.from_schema(group.name, schema))
    return group, schema, store.committed_files(group)


def _read_group(paths: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths], promote_options="permissive")


def run(config: ResourceConfig, opts: argparse.Namespace) -> None:
    import ray
    from ray.data.expressions import col

    started = time.monotonic()
    fractions = check_fractions(opts.train_size, opts.validation_size, opts.test_size)
    as_of = tables.single_event_time(opts.as_of, "--as-of") if opts.as_of else datetime.now(UTC).timestamp()
    group, schema, files = _offline_files(opts)
    if not files:
        raise UserError(f"feature group {group.name} has no records yet: run ingest first")
    log.info("preprocess: %d offline files of feature group %s", len(files), group.name)

    ray.data.DataContext.get_current().execution_options.preserve_order = True  # same input, same files
    in_process_bytes = opts.in_process_mib * MIB
    records = live_records(files, schema, group, as_of, opts.seed, fractions, in_process_bytes).materialize()
    found = records.map_batches(survey, batch_format="pandas", fn_kwargs={"schema": schema}).to_pandas()
    live = int(found["n"][found["kind"] == ROWS].sum()) if len(found) else 0
    log.info("preprocess: %d live records selected and surveyed in %.1f s", live, time.monotonic() - started)
    if live == 0:
        raise UserError(f"feature group {group.name} has no live records as of {_iso(as_of)}")
    learned = learn(found, schema)
    _require_every_split(learned, live, fractions)
    transform = learned.transform
    for name in SPLITS:
        split = records.filter(expr=col("split") == name).drop_columns(["split"])
        encoded = split.map_batches(_encode, batch_format="pandas", fn_kwargs={"transform": transform})
        encoded.write_parquet(str(opts.output / name), min_rows_per_file=1_000_000)
        if opts.csv:
            encoded.write_csv(str(opts.output / f"{name}-csv"), min_rows_per_file=1_000_000)
    transform.save(opts.transform_output)
    report = {
        "feature_group": group.name,
        "as_of": _iso(as_of),
        "records": live,
        "splits": learned.kept,
        "left_out": {"no_target": learned.no_target, "unseen_label": learned.unseen_label},
        "seed": opts.seed,
        "scaler": transform.to_dict()["scaler"],
        "categories": {f: len(c) for f, c in transform.categories.items()},
        "labels": list(transform.labels),
        "seconds": round(time.monotonic() - started, 3),
    }
    opts.report.parent.mkdir(parents=True, exist_ok=True)
    opts.report.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(format_summary(report), flush=True)


def _require_every_split(learned: Learned, live: int, fractions: list[float]) -> None:
    empty = [name for name, count in learned.records.items() if count == 0]
    if empty:
        raise UserError(f"{live} records are too few to split {fractions}: {', '.join(empty)} would be empty")
    left = [name for name, count in learned.kept.items() if count == 0]
    if left:
        raise UserError(
            f"no rows of the {', '.join(left)} split(s) are left: their rows have no target or a label the "
            f"train split never had (labels: {_few(learned.transform.labels)})"
        )


def format_summary(report: dict) -> str:
    """The step's line: the splits, what was left out of them and why, what was learned."""
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    left = [
        f"{n} {split} row(s) {why}"
        for key, why in (("no_target", "without a target"), ("unseen_label", "with a label train never had"))
        for split, n in report["left_out"][key].items()
        if n
    ]
    learned = ["scaler fitted on train"]
    if report["categories"]:
        shown = ", ".join(f"{f} {n}" for f, n in report["categories"].items())
        learned.append(f"categories ({shown})")
    if report["labels"]:
        learned.append(f"labels {_few(report['labels'])}")
    return (
        f"preprocess: {report['records']} live records as of {report['as_of']} -> {splits}"
        + (f"; left out: {', '.join(left)}" if left else "")
        + f"; {', '.join(learned)}; {report['seconds']:.1f} s"
    )


def _few(names: list[str] | tuple[str, ...], shown: int = 10) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _encode(batch: pd.DataFrame, transform: Transform) -> pd.DataFrame:
    """A batch as the model reads it: features encoded, the target a number (a label's position). A row
    without a target, or with a label the train split never had, is left out (`learn` counted it)."""
    out = transform.apply(batch)
    out[transform.schema.target] = transform.encode_target(batch[transform.schema.target])
    return out[out[transform.schema.target].notna().to_numpy()]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
