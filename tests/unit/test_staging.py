"""A staged or generated input appears whole or not at all: two stagings at once, or one killed midway,
never leave a folder under the input's name that holds only part of it (a run would take it as the
whole table for good, and a snapshot ingest would delete the records it lacks)."""

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from smray.workstation import datagen
from smray.workstation import local_workflow as flow

FILES = 6

# Stages argv[2] (or generates argv[3] rows) under the home argv[1], and dies right after the first file.
DIES_AFTER_ONE_FILE = """
import os, shutil, sys
from pathlib import Path
import pandas as pd
from smray.workstation import local_workflow as flow

def dies_after(write):
    def written_then_killed(*args, **kwargs):
        write(*args, **kwargs)
        os._exit(3)
    return written_then_killed

shutil.copyfile = dies_after(shutil.copyfile)
pd.DataFrame.to_parquet = dies_after(pd.DataFrame.to_parquet)
home, source, rows = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
flow.stage_input(home, Path(source) if source else None, rows or None)
"""


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for index in range(FILES):
        frame = datagen.housing_frame(20, seed=index, first_id=100 * index)
        (source / f"part={index}").mkdir(parents=True)
        frame.to_csv(source / f"part={index}" / "data.csv", index=False)
    return source


def _inputs(home: Path) -> dict[str, int]:
    """Each folder under an input's name (a hash of the input, or generated-ROWS), with its count of files."""
    root = home / "inputs"
    named = (
        [d for d in root.iterdir() if re.fullmatch(r"[0-9a-f]{16}|generated-\d+", d.name)]
        if root.is_dir()
        else []
    )
    return {d.name: sum(1 for f in d.rglob("*") if f.is_file()) for d in named}


def _dies_after_one_file(home: Path, source: Path | None = None, rows: int = 0) -> None:
    args = [sys.executable, "-c", DIES_AFTER_ONE_FILE, str(home), str(source or ""), str(rows)]
    assert subprocess.run(args, timeout=120).returncode == 3  # it died midway, as meant


def test_two_stagings_of_one_input_at_once_leave_it_whole(tmp_path, monkeypatch):
    """The first has copied every file and is about to publish them when the second starts on the same
    input: the second must not start over in the first's folder (it left 1 file of 6 under the name)."""
    source, home = _source(tmp_path), tmp_path / "home"
    copy = shutil.copyfile
    copied: dict[str, int] = {"first": 0, "second": 0}
    first_copied_all, second_copied_one, first_done = threading.Event(), threading.Event(), threading.Event()

    def interleaved(src, dst, *args, **kwargs):
        result = copy(src, dst, *args, **kwargs)
        me = threading.current_thread().name
        copied[me] += 1
        if me == "first" and copied[me] == FILES:
            first_copied_all.set()
            second_copied_one.wait(1.0)  # lets the second start over the first's copy, if it can
        elif me == "second" and copied[me] == 1:
            second_copied_one.set()
            first_done.wait(1.0)
        return result

    monkeypatch.setattr(shutil, "copyfile", interleaved)
    staged, failures = {}, []

    def stage(after: threading.Event | None) -> None:
        if after:
            after.wait(5)
        try:
            staged[threading.current_thread().name] = flow.stage_input(home, source)
        except Exception as exc:  # a crash of either is a failure too
            failures.append(exc)

    first = threading.Thread(target=lambda: (stage(None), first_done.set()), name="first")
    second = threading.Thread(target=stage, args=(first_copied_all,), name="second")
    for thread in (first, second):
        thread.start()
    for thread in (first, second):
        thread.join(30)
    assert list(_inputs(home).values()) == [FILES]
    assert failures == [] and staged["first"] == staged["second"]


def test_a_staging_killed_midway_leaves_nothing_under_the_input_s_name(tmp_path):
    source, home = _source(tmp_path), tmp_path / "home"
    _dies_after_one_file(home, source)
    assert _inputs(home) == {}
    staged = flow.stage_input(home, source)  # and the next staging starts over, in full
    assert _inputs(home) == {staged.name: FILES}
    assert not [p for p in (home / "inputs").iterdir() if "partial" in p.name]  # the dead one's is gone


def test_a_generation_killed_midway_is_not_taken_for_the_table(tmp_path):
    home = tmp_path / "home"
    _dies_after_one_file(home, rows=500_000)  # two files of 250,000 rows
    assert _inputs(home) == {}
    staged = flow.stage_input(home, generate=500_000)
    assert _inputs(home) == {"generated-500000": 2}
    assert staged.name == "generated-500000"
