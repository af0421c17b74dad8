import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smray import transform
from smray.contracts.resource_config import local
from smray.entrypoints.modes import ingest, preprocess
from smray.errors import UserError
from smray.feature_store.local import LocalFeatureStore
from smray.workstation import datagen
from tests.integration.test_ingest import options as ingest_options


@pytest.fixture(scope="module")
def store(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    datagen.generate(root / "raw", rows=2000, files=2, fmt="csv", seed=5)
    ingest.run(local(), ingest_options(root, root / "raw"))
    return root


def options(root: Path, out: Path, *args: str):
    opts = preprocess.parser().parse_args(list(args))
    opts.store = str(root / "store")
    opts.output = out / "splits"
    opts.transform_output = out / "transform"
    opts.report = out / "report.json"
    return opts


def read_split(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / "splits" / name)


def test_splits_are_proportional_disjoint_and_scaled_on_train_only(store, tmp_path):
    preprocess.run(local(), options(store, tmp_path))
    splits = {n: read_split(tmp_path, n) for n in preprocess.SPLITS}
    sizes = {n: len(s) for n, s in splits.items()}
    assert sum(sizes.values()) == 2000
    for name, expected in {"train": 1200, "validation": 400, "test": 400}.items():
        assert abs(sizes[name] - expected) < 80, sizes  # a hash split: proportional up to sampling noise
    assert list(splits["train"].columns) == [
        "PRICE",
        *datagen.housing_frame(1, 0, with_ids=False).columns[1:],
    ]
    rows = [set(s.itertuples(index=False, name=None)) for s in splits.values()]
    assert sum(len(r) for r in rows) == len(set().union(*rows)) == 2000  # disjoint, nothing lost
    train = splits["train"]
    assert np.allclose(train["SQUARE_FEET"].mean(), 0, atol=1e-9)
    assert np.allclose(train["SQUARE_FEET"].std(ddof=0), 1, atol=1e-3)
    assert not np.isclose(splits["test"]["SQUARE_FEET"].mean(), 0, atol=1e-9)  # not refitted on test
    t = transform.load(tmp_path / "transform" / transform.FILE_NAME)
    assert t.schema.target == "PRICE" and set(t.scale) == set(t.schema.feature_names)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["records"] == 2000


def test_same_seed_same_split(store, tmp_path):
    preprocess.run(local(), options(store, tmp_path / "a"))
    preprocess.run(local(), options(store, tmp_path / "b"))
    a, b = read_split(tmp_path / "a", "train"), read_split(tmp_path / "b", "train")
    pd.testing.assert_frame_equal(a, b)


def test_ray_tasks_and_the_job_s_process_select_the_same_rows_in_the_same_order(store, tmp_path):
    preprocess.run(local(), options(store, tmp_path / "tasks", "--in-process-mib", "0"))
    preprocess.run(local(), options(store, tmp_path / "here"))  # 2,000 rows: read in the job's process
    for name in preprocess.SPLITS:
        pd.testing.assert_frame_equal(
            read_split(tmp_path / "tasks", name), read_split(tmp_path / "here", name)
        )


@pytest.mark.parametrize("in_process_mib", ["0", "32"])
def test_latest_record_per_id_as_of_and_deletes(ray_cluster, tmp_path, in_process_mib):
    raw = tmp_path / "raw"
    raw.mkdir()
    frame = datagen.housing_frame(20, seed=9)
    frame["event_time"] = 1_000_000.0
    later = frame.iloc[:5].assign(event_time=2_000_000.0, PRICE=1.0)
    pd.concat([frame, later]).to_csv(raw / "a.csv", index=False)
    ingest.run(local(), ingest_options(tmp_path, raw))
    store = LocalFeatureStore(tmp_path / "store")
    group = store.describe("housing")
    store.put(group, frame.iloc[[19]].assign(event_time=3_000_000.0), deleted=True)

    halves = ["--train-size", "0.5", "--validation-size", "0.25", "--test-size", "0.25"]
    halves += ["--in-process-mib", in_process_mib]  # by Ray tasks, or in the job's process
    preprocess.run(local(), options(tmp_path, tmp_path / "now", *halves, "--csv"))
    rows = pd.concat([read_split(tmp_path / "now", n) for n in preprocess.SPLITS])
    assert len(rows) == 19 and (rows["PRICE"] == 1.0).sum() == 5, rows
    assert (tmp_path / "now" / "splits" / "train-csv").is_dir()

    preprocess.run(local(), options(tmp_path, tmp_path / "then", *halves, "--as-of", "1970-01-13T00:00:00Z"))
    rows = pd.concat([read_split(tmp_path / "then", n) for n in preprocess.SPLITS])
    assert (
        len(rows) == 20 and (rows["PRICE"] == 1.0).sum() == 0
    )  # as of day 13: after the records, before the updates


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ((0.6, 0.2, 0.3), "must sum to 1"),
        ((0.8, 0.2, 0.0), "test fraction must be positive"),
        ((1.2, -0.1, -0.1), "validation fraction must be positive"),
    ],
)
def test_bad_fractions(sizes, message):
    with pytest.raises(UserError, match=message):
        preprocess.check_fractions(*sizes)


def test_missing_feature_group_is_a_clear_error(ray_cluster, tmp_path):
    with pytest.raises(UserError, match="feature group housing does not exist"):
        preprocess.run(local(), options(tmp_path, tmp_path))
    assert not (tmp_path / "splits").exists()


def test_moments_merge_to_the_population_statistics():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.normal(1e6, 3.0, 1000), "b": rng.normal(0, 1, 1000)})
    parts = pd.concat([preprocess.moments(data.iloc[i : i + 137], ["a", "b"]) for i in range(0, 1000, 137)])
    scale = preprocess.merge_moments(parts, ["a", "b"])
    assert scale["a"].mean == pytest.approx(data["a"].mean(), rel=1e-12)
    assert scale["a"].std == pytest.approx(data["a"].std(ddof=0), rel=1e-9)
    assert scale["b"].std == pytest.approx(data["b"].std(ddof=0), rel=1e-9)


def test_a_record_keeps_its_split_when_the_data_grows():
    small = preprocess.split_of(pd.Series([str(i) for i in range(100)]), 42, [0.6, 0.2, 0.2])
    large = preprocess.split_of(pd.Series([str(i) for i in range(1000)]), 42, [0.6, 0.2, 0.2])
    assert (large.iloc[:100].to_numpy() == small.to_numpy()).all()
    other_seed = preprocess.split_of(pd.Series([str(i) for i in range(100)]), 7, [0.6, 0.2, 0.2])
    assert (other_seed.to_numpy() != small.to_numpy()).any()
