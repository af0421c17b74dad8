import pandas as pd

from smray import cli


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
    from smray import datagen

    a, b = datagen.housing_frame(100, seed=1), datagen.housing_frame(100, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not datagen.housing_frame(100, seed=2).equals(a)


def test_readme_documents_every_hyperparameter_as_declared():
    from pathlib import Path

    from smray import hyperparameters

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert hyperparameters.markdown_table() in readme
