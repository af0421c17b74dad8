"""One taxonomy of failures: what the user can fix, what the platform failed at, and bugs; each shown in
one line by the CLI and in a job's failure file, which says which kind it is."""

import argparse
import subprocess
import sys
import types

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from smray import errors
from smray.entrypoints import dispatch
from smray.errors import ClusterError, PlatformError, UserError
from smray.workstation import cli

ACCESS_DENIED = ClientError(
    {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "CreateFeatureGroup"
)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (UserError("column PRICE is missing"), "column PRICE is missing"),
        (ClusterError("lost the head host algo-1"), "platform error: lost the head host algo-1"),
        (
            subprocess.CalledProcessError(1, ["docker", "run", "x"], stderr="a\nport is already allocated\n"),
            "platform error: `docker run x` exited with 1: port is already allocated",
        ),
        (
            ACCESS_DENIED,
            "platform error: An error occurred (AccessDeniedException) when calling the "
            "CreateFeatureGroup operation: not allowed",
        ),
        (NoCredentialsError(), "platform error: Unable to locate credentials"),
        (KeyError("x"), "internal error: KeyError: 'x'"),
    ],
)
def test_each_kind_is_one_line_that_says_which_kind_it_is(exc, line):
    assert errors.one_line(exc) == line
    assert errors.expected(exc) is not line.startswith("internal error")


@pytest.mark.parametrize("exc", [PlatformError("docker ps failed: Cannot connect"), ACCESS_DENIED])
def test_the_cli_turns_an_expected_failure_into_one_line_and_exit_1(exc, monkeypatch, capsys):
    def command(args):
        raise exc

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(func=command))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["anything"])
    assert stopped.value.code == f"smray: {errors.one_line(exc)}"  # printed to stderr, exit status 1


def test_the_cli_lets_a_bug_show_its_traceback(monkeypatch):
    def command(args):
        raise KeyError("x")

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(func=command))
    with pytest.raises(KeyError):
        cli.main(["anything"])


def test_a_job_s_failure_file_names_a_platform_error_without_a_traceback(opt_ml, monkeypatch, caplog):
    def lost(config, opts):
        raise ClusterError("lost a host")

    fake = types.ModuleType("lost_mode")
    fake.parser, fake.run = argparse.ArgumentParser, lost
    monkeypatch.setitem(sys.modules, "lost_mode", fake)
    monkeypatch.setitem(dispatch.MODES, "register", dispatch.Mode("register", "", "lost_mode", False))
    assert dispatch.run(["register"]) == 1
    assert (opt_ml / "output" / "failure").read_text() == "platform error: lost a host\n"
    assert "Traceback" not in caplog.text and "unexpected failure" not in caplog.text
