"""Every real table, read and checked: text features (any value, an empty cell missing), labels as text
(1 and 1.0 one label), numbers missing or not finite, rows without a target under their policy; the
feature group's types; the generated tables of each task."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from smray import schema as schema_mod
from smray import tables
from smray.entrypoints.modes import preprocess
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.quality import check
from smray.workstation import cli, datagen

CHURN = {
    "name": "churn",
    "target": "churned",
    "task": "binary",
    "features": [{"name": "state", "type": "string"}, {"name": "calls", "type": "integral"}],
}


def churn(**changes) -> schema_mod.Schema:
    return schema_mod.parse(CHURN | changes)


def read_csv(tmp_path, text: str) -> pd.DataFrame:
    path = tmp_path / "a.csv"
    path.write_text(text)
    return tables.read(path)


def test_text_is_text_whatever_it_looks_like_and_an_empty_cell_is_missing(tmp_path):
    raw = read_csv(tmp_path, "churned,state,calls\nyes,CA,1\nno,,\n1.0,inf,3\n1,nan,4\n")
    values = tables.values(raw, churn(), "a.csv")
    assert values["state"].isna().tolist() == [False, True, False, False]
    assert values["state"].dropna().tolist() == ["CA", "inf", "nan"]
    assert values["churned"].tolist() == ["yes", "no", "1.0", "1"]  # CSV text is kept as written
    assert values["calls"].tolist()[::2] == [1.0, 3.0] and np.isnan(values["calls"][1])
    with pytest.raises(UserError, match="column calls has a non-numeric value 'many' at row 2"):
        tables.values(raw.assign(calls=["many", None, "3", "4"]), churn(), "a.csv")


def test_a_label_read_as_a_number_is_the_label_its_text_names():
    raw = pd.DataFrame({"churned": [1.0, 0.0, np.nan], "state": [7, 8, 9], "calls": [1, 2, 3]})
    values = tables.values(raw, churn(), "a.parquet")  # a Parquet file: numbers, a float target
    assert values["churned"].isna().tolist() == [False, False, True]
    assert values["churned"].dropna().tolist() == ["1", "0"]
    assert values["state"].tolist() == ["7", "8", "9"]


def test_the_finite_rule_is_for_numbers_only_and_a_row_without_a_target_is_quarantined(tmp_path):
    raw = read_csv(tmp_path, "churned,state,calls\nyes,inf,1\n,CA,2\nno,nan,inf\n,,\n")
    values = tables.values(raw, churn(), "a.csv")
    verdict = check(values, churn(), "a.csv", tables.not_finite(values, raw))
    assert verdict.keep.tolist() == [True, False, False, False]  # "inf" and "nan" are text in state
    assert verdict.reasons.tolist() == ["", "churned present", "calls finite", "churned present"]


def test_a_regression_row_without_a_target_is_quarantined_and_one_not_finite_breaks_finite(tmp_path):
    housing = schema_mod.housing()
    header = ",".join(housing.value_columns)
    rest = ",2008,3063.6,2,1.0,1.37,2,0,0"
    raw = read_csv(tmp_path, f"{header}\n1{rest}\n{rest}\nnan{rest}\n")
    values = tables.values(raw, housing, "a.csv")
    verdict = check(values, housing, "a.csv", tables.not_finite(values, raw))
    assert verdict.reasons.tolist() == ["", "PRICE present", "PRICE finite"]


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_row_without_a_target_fails_the_step_under_the_fail_policy(tmp_path, task):
    schema = churn(missing_target="fail") if task == "binary" else schema_mod.housing()
    if task == "regression":
        schema = schema_mod.parse(schema.to_dict() | {"missing_target": "fail"})
        row = ",2008,3063.6,2,1.0,1.37,2,0,0"
        raw = read_csv(tmp_path, ",".join(schema.value_columns) + f"\n1{row}\n1{row}\n{row}\n")
        target = "PRICE"
    else:
        raw = read_csv(tmp_path, "churned,state,calls\nyes,CA,1\nno,CA,1\n,CA,1\n")
        target = "churned"
    values = tables.values(raw, schema, "a.csv")
    with pytest.raises(UserError) as err:
        check(values, schema, "a.csv", tables.not_finite(values, raw))
    assert str(err.value) == (
        f"a.csv: 1 row(s) break the rule {target} present (policy: fail); first at row 4: {target} is empty"
    )


def test_string_features_and_labels_are_feature_store_strings_and_numeric_groups_are_as_before():
    group = FeatureGroupDefinition.from_schema("churn", churn())
    assert group.value_types() == {"churned": "String", "state": "String", "calls": "Integral"}
    regression = FeatureGroupDefinition.from_schema("churn", churn(task="regression"))
    assert regression.value_types()["churned"] == "Fractional"
    # A group an earlier smray made for the housing schema (its description, as it wrote it) still matches.
    older = {
        "FeatureGroupName": "housing",
        "RecordIdentifierFeatureName": "record_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [
            {"FeatureName": "record_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "Fractional"},
            {"FeatureName": "PRICE", "FeatureType": "Fractional"},
            *(
                {"FeatureName": f.name, "FeatureType": f.type.value.capitalize()}
                for f in schema_mod.housing().features
            ),
        ],
    }
    FeatureGroupDefinition.from_description(older).check_matches(
        FeatureGroupDefinition.from_schema("housing", schema_mod.housing())
    )
    with pytest.raises(UserError, match="churned is Fractional in the group but String in the data"):
        regression.check_matches(group)


def _survey(schema, frame):
    """The survey of `frame` (with its split column) in two batches, as Ray's map_batches would give it."""
    half = len(frame) // 2
    return pd.concat(
        [preprocess.survey(frame.iloc[:half], schema), preprocess.survey(frame.iloc[half:], schema)]
    )


def test_categories_and_labels_are_learned_on_train_only_and_unseen_labels_counted():
    frame = pd.DataFrame(
        {
            "churned": pd.array(["yes", "no", "no", "maybe", None, "yes", "no"], dtype="str"),
            "state": pd.array(["CA", "NY", None, "TX", "CA", "WA", "NV"], dtype="str"),
            "calls": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0],
            "split": ["train", "train", "train", "test", "validation", "test", "validation"],
        }
    )
    learned = preprocess.learn(_survey(churn(), frame), churn())
    assert learned.transform.labels == ("no", "yes")
    assert learned.transform.categories == {"state": ("CA", "NY")}  # TX, WA, NV are not in train
    assert set(learned.transform.scale) == {"calls"}
    assert learned.transform.scale["calls"].mean == 2.0  # of train's 1, 2, 3
    assert learned.records == {"train": 3, "validation": 2, "test": 2}
    assert learned.no_target == {"train": 0, "validation": 1, "test": 0}
    assert learned.unseen_label == {"train": 0, "validation": 0, "test": 1}
    assert learned.kept == {"train": 3, "validation": 1, "test": 1}


def test_a_regression_survey_counts_rows_without_a_target_and_fits_the_numbers_on_train():
    housing = schema_mod.housing()
    frame = datagen.housing_frame(40, seed=1, with_ids=False).astype("float64")
    frame.loc[[3, 7], "PRICE"] = np.nan
    frame["split"] = ["train", "validation", "test", "train"] * 10
    learned = preprocess.learn(_survey(housing, frame), housing)
    assert learned.records == {"train": 20, "validation": 10, "test": 10}
    assert learned.no_target == {"train": 2, "validation": 0, "test": 0}  # rows 3 and 7
    assert learned.transform.labels == () and learned.transform.categories == {}
    train = frame[frame["split"] == "train"]
    assert np.isclose(learned.transform.scale["SQUARE_FEET"].std, train["SQUARE_FEET"].std(ddof=0))


def test_the_step_line_says_what_was_left_out_and_why():
    report = {
        "records": 10,
        "as_of": "now",
        "splits": {"train": 6, "validation": 2, "test": 1},
        "left_out": {"no_target": {"validation": 0, "test": 0}, "unseen_label": {"test": 1}},
        "categories": {"state": 2},
        "labels": ["no", "yes"],
        "seconds": 1.0,
    }
    line = preprocess.format_summary(report)
    assert "left out: 1 test row(s) with a label train never had" in line
    assert "categories (state 2), labels no, yes" in line


# The housing table's first rows as smray generated them before other tables: the same, byte for byte.
HOUSING_SEED_42 = [
    "cd9912cc3b8cdace58550f4f4007f611f1c083373770b0c74f780daae8e4d702",
    "527c2ad9c826d6b25240719884f737dc38e0c752aa77f65aeef4fa7393ffd9f6",
]


def test_the_housing_table_is_generated_as_before(tmp_path):
    generated = datagen.generate(tmp_path, rows=50, files=2, fmt="csv", seed=42)
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in generated.files] == HOUSING_SEED_42
    assert generated.schema is None and sorted(tmp_path.iterdir()) == generated.files


@pytest.mark.parametrize(
    ("task", "target", "labels"),
    [("binary", "churned", {"no", "yes"}), ("multiclass", "segment", set(datagen.SEGMENTS))],
)
def test_classification_tables_have_text_empty_cells_labels_and_their_schema(tmp_path, task, target, labels):
    generated = datagen.generate(tmp_path / "a", rows=3000, files=2, fmt="parquet", seed=7, task=task)
    again = datagen.generate(tmp_path / "b", rows=3000, files=2, fmt="parquet", seed=7, task=task)
    frames = [pd.concat(map(pd.read_parquet, g.files), ignore_index=True) for g in (generated, again)]
    pd.testing.assert_frame_equal(*frames)  # seeded
    frame = frames[0]
    schema = schema_mod.load(generated.schema)
    assert schema.task.value == task and schema.target == target
    assert list(frame.columns) == [schema.record_id, schema.event_time, *schema.value_columns]
    assert set(frame[target]) == labels
    assert all(frame[c].dropna().map(type).eq(str).all() for c in schema.categorical)
    empty = frame[schema.feature_names].isna().mean()
    assert 0.01 < empty.max() < 0.04 and frame[target].notna().all()
    values = tables.values(frame, schema, "generated")  # it reads and checks as a user's table
    verdict = check(values, schema, "generated", tables.not_finite(values, frame))
    assert verdict.quarantined == 0


def test_data_generate_takes_a_task_and_names_the_schema_it_wrote(tmp_path, capsys):
    argv = ["data", "generate", "--task", "binary", "--rows", "30", "--files", "1", "--out", str(tmp_path)]
    try:
        cli.main(argv)
    except SystemExit as exit_:
        assert exit_.code == 0
    assert f"its schema: {tmp_path / 'schema.json'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "schema.json").read_text())["task"] == "binary"
    assert pd.read_csv(tmp_path / "churn-0000.csv")["churned"].isin(["yes", "no"]).all()
