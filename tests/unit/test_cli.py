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


def _checkout(folder, name="smray"):
    """A checkout holding the package (as an editable install runs it) and its build.sh."""
    (folder / "src" / "smray").mkdir(parents=True)
    (folder / "src" / "smray" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    (folder / "build.sh").write_text(f'echo "{folder.name}/build.sh got: $*"\nexit 3\n')
    return folder / "src" / "smray" / "__init__.py"


def test_build_runs_the_build_sh_of_the_checkout_smray_runs_from(tmp_path, monkeypatch, capfd):
    import smray

    monkeypatch.setattr(smray, "__file__", str(_checkout(tmp_path / "checkout")))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "build.sh").write_text('echo "elsewhere/build.sh ran"\n')
    monkeypatch.chdir(tmp_path / "elsewhere")  # the working folder's build.sh is never the one
    args = cli.parse(["build", "--push", "127.0.0.1:5000"])
    assert args.func(args) == 3  # build.sh's own exit code
    assert capfd.readouterr().out == "checkout/build.sh got: --push 127.0.0.1:5000\n"


@pytest.mark.parametrize("where", ["installed", "another project"])
def test_build_from_anywhere_but_smray_s_checkout_is_refused_in_one_line(tmp_path, monkeypatch, capfd, where):
    import smray

    if where == "installed":  # site-packages, under a folder whose build.sh is someone else's
        package = tmp_path / "lib" / "site-packages" / "smray" / "__init__.py"
        package.parent.mkdir(parents=True)
        (tmp_path / "build.sh").write_text('echo "their build.sh ran"\n')
    else:  # vendored inside another project, which has a build.sh of its own
        package = _checkout(tmp_path / "other", name="other")
    monkeypatch.setattr(smray, "__file__", str(package))
    monkeypatch.chdir(package.parent)
    args = cli.parse(["build"])
    with pytest.raises(UserError, match=r"^smray build runs the build\.sh of the smray checkout") as refused:
        args.func(args)
    assert "\n" not in str(refused.value) and capfd.readouterr().out == ""


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


TERMINATED = """
import os, signal, time
from smray.workstation import cli

def slow(args):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    finally:
        print("cleaned up", flush=True)

cli.cmd_runs = slow
cli.main(["runs"])
"""


def test_sigterm_ends_a_command_the_way_ctrl_c_does_so_that_it_cleans_up():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", TERMINATED], capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout, done.stderr) == (130, "cleaned up\n", "")
