"""The image's entrypoint running a mode on a real single-host Ray cluster of its own."""

import pytest

from smray.entrypoints import dispatch


@pytest.mark.timeout(120)
def test_cluster_check_on_one_local_host(opt_ml, monkeypatch, capsys):
    monkeypatch.setenv("SMRAY_OBJECT_STORE_MIB", "100")
    assert dispatch.run(["cluster-check"]) == 0
    out = capsys.readouterr().out
    assert "cluster-check: task ran on algo-1 (" in out
    assert "cluster-check: OK, 1/1 hosts answered" in out
    assert not (opt_ml / "output" / "failure").exists()
