import re

import pandas as pd
import pytest

from smray.errors import UserError
from smray.workstation import cli


def test_data_generate_writes_the_files_it_says(tmp_path, capsys):
    try:
        cli.main(
            [
                "data",
                "generate",
                "--rows",
                "1001",
                "--files",
                "3",
                "--format",
                "parquet",
                "--out",
                str(tmp_path),
            ]
        )
    except SystemExit as exit_:
        assert exit_.code == 0
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 3
    frame = pd.concat(pd.read_parquet(f) for f in files)
    assert len(frame) == 1001 and frame["record_id"].is_unique
    assert "1,001 rows in 3 parquet file(s)" in capsys.readouterr().out


def test_generated_data_is_seeded():
    from smray.workstation import datagen

    a, b = datagen.housing_frame(100, seed=1), datagen.housing_frame(100, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not datagen.housing_frame(100, seed=2).equals(a)


def test_readme_documents_every_hyperparameter_as_declared():
    from pathlib import Path

    from smray import hyperparameters

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert hyperparameters.markdown_table() in readme


def test_build_runs_the_checkout_s_build_sh_with_its_arguments(tmp_path, monkeypatch, capfd):
    (tmp_path / "build.sh").write_text('echo "build.sh got: $*"\nexit 3\n')
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")  # found in a parent folder
    args = cli.parse(["build", "--push", "127.0.0.1:5000"])
    assert args.func(args) == 3  # build.sh's own exit code
    assert "build.sh got: --push 127.0.0.1:5000" in capfd.readouterr().out


def test_build_outside_a_checkout_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.parse(["build"])
    with pytest.raises(UserError, match=r"no build\.sh in"):
        args.func(args)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "house prices"}, "name 'house prices' names the feature group"),
        ({"name": "houses_v2"}, "name 'houses_v2' names the feature group"),
        ({"target": "PRICE; DROP TABLE online"}, "column name 'PRICE; DROP TABLE online' is not a valid"),
        ({"record_id": "is_deleted"}, "column name 'is_deleted' is not a valid"),
        ({"event_time": "_time"}, "column name '_time' is not a valid"),
    ],
)
def test_schema_names_follow_sagemaker_s_rules(change, message):
    from smray import schema as schema_mod

    raw = schema_mod.housing().to_dict() | change
    with pytest.raises(UserError, match=re.escape(message)):
        schema_mod.parse(raw)
