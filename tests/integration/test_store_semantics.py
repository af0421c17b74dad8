"""One store semantics on both backends: the same three ingests of a churn table (text features, empty
cells, yes/no labels, event times from the data), with edits, inserts, deletes, returning records (one
with an older row too) and a quarantined row, give the same counts and, read back by preprocess, the
same training rows from the local store as from SageMaker Feature Store. SageMaker's side is the image's
code against moto's server (S3, the control plane) and tests/support's Feature Store runtime, whose
offline store is written in AWS's layout; preprocess reads it downloaded, as the pipeline's processing
input does."""

import json
from pathlib import Path

import pandas as pd
import pytest

from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest, preprocess
from smray.workstation import datagen
from tests.support.aws_standins import aws_stand_ins, process_environment
from tests.unit.test_feature_store_sagemaker import ROLE

GROUP = "churn"


@pytest.fixture(scope="module")
def aws():
    with aws_stand_ins(host="127.0.0.1") as endpoints, process_environment(endpoints.environment()):
        endpoints.client("s3").create_bucket(Bucket="offline")
        yield endpoints


@pytest.fixture(scope="module")
def cluster(aws, ray_cluster):
    return ray_cluster


def versions(folder: Path) -> tuple[Path, list[pd.DataFrame]]:
    """The generated table, then two edited versions of it, as a user's edits would go."""
    generated = datagen.generate(folder / "generated", rows=300, files=1, fmt="csv", seed=9, task="binary")
    first = pd.read_csv(generated.files[0], dtype=str, keep_default_na=False)
    second = first.drop(index=range(10, 20))  # ten records leave the table
    second.loc[[1, 2, 3], "minutes"] = "999.5"  # three edited
    second.loc[4, "state"] = ""  # one value emptied
    added = first.iloc[:5].assign(record_id=[f"new-{i}" for i in range(5)])
    second = pd.concat([second, added], ignore_index=True)  # five inserted
    # three come back, one of them with an older row of other values too: its newest row is the record
    history = first.iloc[[13]].assign(
        record_id=first.loc[10, "record_id"], event_time=float(first.loc[10, "event_time"]) - 86400
    )
    third = pd.concat([second, first.iloc[10:13], history], ignore_index=True)
    third.loc[5, "plan"] = "premium" if third.loc[5, "plan"] != "premium" else "basic"  # one more edit
    third.loc[6, "minutes"] = "inf"  # quarantined: its record leaves the live set
    return generated.schema, [first, second, third]


def ingest_options(backend: str, raw: Path, out: Path, schema: Path):
    args = ["--backend", backend, "--feature-group", GROUP, "--schema", str(schema), "--input", str(raw)]
    if backend == "local":
        args += ["--store", str(out.parent / "store")]  # one store for the three ingests
    else:
        args += ["--role-arn", ROLE, "--offline-s3-uri", "s3://offline/fs", "--wait-offline-s", "60"]
    args += ["--report", str(out / "ingest.json"), "--quarantine", str(out / "quarantine")]
    return ingest.parser().parse_args(args)


def downloaded_offline_store(aws, into: Path) -> Path:
    """The group's offline files, as a processing input of its ResolvedOutputS3Uri downloads them (ingest
    waited for this ingest's rows to land there: the stand-in writes them within a second)."""
    description = aws.client("sagemaker").describe_feature_group(FeatureGroupName=GROUP)
    uri = description["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = into / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
    return into


def training_rows(out: Path) -> dict[str, pd.DataFrame]:
    """Each split's rows in one order (sorted by every column; an empty cell is NaN, equal to itself)."""
    splits = {s: pd.read_parquet(out / "splits" / s) for s in preprocess.SPLITS}
    return {s: f.sort_values(list(f.columns)).reset_index(drop=True) for s, f in splits.items()}


def ingest_and_read(aws, backend: str, raw: Path, out: Path, schema: Path) -> tuple[dict, dict]:
    ingest.run(local(), ingest_options(backend, raw, out, schema))
    report = json.loads((out / "ingest.json").read_text())
    args = ["--feature-group", GROUP, "--schema", str(schema)]
    if backend == "local":
        args += ["--store", str(out.parent / "store")]
    else:
        args += ["--offline-files", str(downloaded_offline_store(aws, out / "offline"))]
    opts = preprocess.parser().parse_args(args)
    opts.output, opts.transform_output, opts.report = out / "splits", out / "transform", out / "pre.json"
    preprocess.run(local(), opts)
    counts = {k: report[k] for k in ("written", "already_present", "deleted", "quarantined", "mode")}
    return counts, training_rows(out)


def test_three_ingests_give_the_same_training_rows_on_both_stores(cluster, aws, tmp_path):
    schema, tables = versions(tmp_path)
    seen = []
    for step, table in enumerate(tables):
        raw = tmp_path / f"raw-{step}"
        raw.mkdir()
        table.to_csv(raw / "churn.csv", index=False)
        both = {
            backend: ingest_and_read(aws, backend, raw, tmp_path / backend / str(step), schema)
            for backend in ("local", "sagemaker")
        }
        assert both["local"][0] == both["sagemaker"][0], step  # the same counts
        for split, rows in both["local"][1].items():  # the same training rows
            pd.testing.assert_frame_equal(rows, both["sagemaker"][1][split], check_exact=True, obj=split)
        seen.append(both["local"][0])
    assert [(c["written"], c["already_present"], c["deleted"], c["quarantined"]) for c in seen] == [
        (300, 0, 0, 0),
        (9, 286, 10, 0),  # 3 edited + 1 emptied + 5 new; 10 gone
        (5, 293, 1, 1),  # 3 back (one with an older row) + 1 edited, 1 quarantined: its record gone
    ]
