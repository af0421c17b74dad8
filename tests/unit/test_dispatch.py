import os
import subprocess
import sys

from smray import paths
from smray.entrypoints import dispatch
from tests.conftest import write_json


def test_no_mode_is_a_usage_error(capsys):
    assert dispatch.run([]) == 2
    assert "usage: smray-entrypoint MODE" in capsys.readouterr().err


def test_help_lists_the_modes(capsys):
    assert dispatch.run(["--help"]) == 0
    assert "cluster-check" in capsys.readouterr().out


def test_unknown_mode_is_a_usage_error(capsys, opt_ml):
    assert dispatch.run(["trian"]) == 2
    assert "unknown mode 'trian'" in capsys.readouterr().err
    assert not (opt_ml / "output").exists()


def test_malformed_training_config_writes_the_failure_reason(opt_ml):
    write_json(paths.training_resource_config(), '{"current_host": "algo-1", "hosts": [')
    assert dispatch.run(["cluster-check"]) == 1
    reason = (opt_ml / "output" / "failure").read_text()
    assert "is not valid JSON" in reason and reason.count("\n") == 1


def test_processing_failures_go_to_the_exit_message(opt_ml):
    write_json(paths.processing_resource_config(), {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    assert dispatch.run(["cluster-check"]) == 1
    assert "SMRAY_RAY_TOKEN is not set" in (opt_ml / "output" / "message").read_text()


def test_bad_mode_arguments_are_a_usage_error(opt_ml):
    assert dispatch.run(["cluster-check", "--hold", "soon"]) == 2
    assert "invalid arguments for mode cluster-check" in (opt_ml / "output" / "failure").read_text()


def test_a_job_s_stdout_on_a_tty_is_a_log_so_ray_data_logs_its_progress():
    """SageMaker local mode gives containers a TTY; Ray Data would redraw bars there that never reach
    the run log. After the entrypoint's logging set-up, stdout says it is not a terminal."""
    import pty

    main, child = pty.openpty()
    code = (
        "import sys; from smray.entrypoints import dispatch; "
        "dispatch._configure_logging(); print(sys.stdout.isatty())"
    )
    process = subprocess.run([sys.executable, "-c", code], stdout=child, timeout=60)
    os.close(child)
    assert process.returncode == 0
    assert os.read(main, 1024).decode().strip() == "False"
    os.close(main)


def test_evaluate_runs_on_the_head_without_ray_and_another_host_ends(opt_ml, capsys):
    """Evaluate uses no Ray: the head runs it without starting Ray (no cluster token needed), the other
    hosts of a job end at once."""
    hosts = {"hosts": ["algo-1", "algo-2"]}
    write_json(paths.processing_resource_config(), {"current_host": "algo-2", **hosts})
    assert dispatch.run(["evaluate"]) == 0
    assert not (opt_ml / "output" / "message").exists()
    write_json(paths.processing_resource_config(), {"current_host": "algo-1", **hosts})
    assert dispatch.run(["evaluate", "--model", str(opt_ml / "nowhere")]) == 1
    reason = (opt_ml / "output" / "message").read_text()
    assert "nowhere" in reason and "SMRAY_RAY_TOKEN" not in reason
