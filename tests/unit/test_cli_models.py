"""`smray models` and `smray runs` on a local registry and history under SMRAY_HOME."""

import pytest

from smray.errors import UserError
from smray.registry.local import LocalRegistry
from smray.workstation import cli, tracking


def _run(argv):
    args = cli.parse(argv)
    return args.func(args)


def test_list_describe_approve_reject(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMRAY_HOME", str(tmp_path))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    registry = LocalRegistry(tmp_path / "registry")
    metrics = {"regression_metrics": {"rmse": {"value": 5123.4, "standard_deviation": 1.0}}}
    for execution in ("e1", "e2"):
        registry.register("housing", model, "smray:1", metrics, execution=execution)
    assert _run(["models", "approve", "2", "--reason", "checked"]) == 0
    assert _run(["models", "reject", "1"]) == 0
    assert _run(["models", "list"]) == 0
    assert _run(["models", "describe", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    listing = [line for line in out if line.startswith("housing/")][2:4]
    assert (
        listing[0].split()[:2] == ["housing/2", "Approved"]
        and "5,123" in listing[0]
        and listing[0].endswith("e2")
    )
    assert listing[1].split()[:2] == ["housing/1", "Rejected"]
    assert "  note     checked" in out
    with pytest.raises(UserError, match="no model version housing/9"):
        _run(["models", "approve", "9"])


def test_runs_lists_recorded_runs_side_by_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMRAY_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.record(
        tmp_path,
        tracking.Run("abc", 1.8e9, "Succeeded", {"hp_eta": "0.05", "hp_seed": "1"}, {"test_rmse": 4512.3}),
    )
    assert _run(["runs"]) == 0
    line = capsys.readouterr().out.strip()
    assert "abc" in line and "test_rmse 4,512" in line and "[eta=0.05]" in line
