import json
import tarfile

import numpy as np
import pytest

from smray import metrics
from smray.contracts.resource_config import local
from smray.entrypoints.modes import evaluate
from smray.errors import UserError
from tests.integration.test_train import make_channels, run_train


@pytest.fixture
def trained(opt_ml):
    channels = make_channels(opt_ml, 4_000)
    run_train(opt_ml, num_round=60)
    return opt_ml / "model", channels / "validation"


def run_evaluate(model, test, out, *extra):
    opts = evaluate.parser().parse_args(
        ["--model", str(model), "--test", str(test), "--output", str(out), *extra]
    )
    evaluate.run(local(), opts)
    return json.loads((out / "evaluation.json").read_text())


def test_evaluation_json_and_report(trained, tmp_path, capsys):
    model, test = trained
    result = run_evaluate(model, test, tmp_path / "eval", "--raw")
    m = result["regression_metrics"]
    assert set(m) == {"rmse", "mae", "r2", "mape"}
    assert all(set(v) == {"value", "standard_deviation"} for v in m.values())
    assert 0 < m["rmse"]["value"] < 30_000 and m["r2"]["value"] > 0.9
    assert 0 < m["rmse"]["standard_deviation"] < m["rmse"]["value"]
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == [
        "evaluation.json",
        "feature_importance.png",
        "predicted_vs_actual.png",
        "report.html",
        "residuals.png",
        "training_curve.png",
    ]
    page = (tmp_path / "eval" / "report.html").read_text()
    assert 'src="predicted_vs_actual.png"' in page and "rmse" in page
    assert (tmp_path / "eval" / "residuals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "evaluate: 800 test rows: rmse" in capsys.readouterr().out


def test_model_tar_gz_as_sagemaker_hands_it_over(trained, tmp_path):
    model, test = trained
    archive = tmp_path / "in" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for f in model.iterdir():
            tar.add(f, arcname=f.name)
    direct = run_evaluate(model, test, tmp_path / "a", "--raw")
    packed = run_evaluate(archive.parent, test, tmp_path / "b", "--raw")
    assert direct == packed


def test_corrupt_model_is_a_clear_error(trained, tmp_path):
    model, test = trained
    (model / "model.json").write_text('{"learner": ')
    with pytest.raises(UserError, match=r"model\.json is not a valid XGBoost model"):
        run_evaluate(model, test, tmp_path / "eval", "--raw")
    assert not (tmp_path / "eval" / "evaluation.json").exists()


def test_test_data_without_a_feature_is_a_clear_error(trained, tmp_path):
    model, _ = trained
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.csv").write_text("PRICE,YEAR_BUILT\n1,2000\n")
    with pytest.raises(UserError, match="missing column"):
        run_evaluate(model, tmp_path / "test", tmp_path / "eval")


def test_metrics_match_their_definitions():
    y = np.array([100.0, 200.0, 300.0, 400.0])
    p = np.array([110.0, 190.0, 330.0, 400.0])
    m = metrics.regression(y, p)["regression_metrics"]
    assert m["rmse"]["value"] == pytest.approx(np.sqrt((100 + 100 + 900 + 0) / 4))
    assert m["mae"]["value"] == pytest.approx(50 / 4)
    assert m["mape"]["value"] == pytest.approx((0.1 + 0.05 + 0.1 + 0) / 4)
    assert m["r2"]["value"] == pytest.approx(1 - 1100 / 50_000)
