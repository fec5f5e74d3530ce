"""`evaluator evaluate --json` on models whose predictions are the wrong kind of value, with real containers."""

from __future__ import annotations

import json

import pytest

from evaluator.cli import main
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def evaluate(capsys, tmp_path, source: str, task: str) -> tuple[int, dict]:
    data = fx.classification_data(tmp_path / "data") if task == "classification" else \
        fx.regression_data(tmp_path / "data")
    _, _, features, labels = data
    bundle = fx.predict_bundle(tmp_path / "model.tar.gz", source)
    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", task, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_floats_for_integer_classes_end_predictions_invalid(capsys, tmp_path, images_built, bad):
    images_built("sklearn")
    source = f"""
        import numpy as np

        def predict(batch):
            values = np.zeros(len(batch))
            values[::7] = float("{bad}")
            return values
    """
    code, record = evaluate(capsys, tmp_path, source, "classification")
    assert code != 0 and record["status"] == "failed"
    assert record["failure"]["code"] == "predictions_invalid"
    assert "NaN or infinite" in record["failure"]["message"], record["failure"]


def test_regression_predictions_whose_squares_overflow_end_predictions_invalid(capsys, tmp_path, images_built):
    images_built("sklearn")
    source = """
        import numpy as np

        def predict(batch):
            return np.full(len(batch), 1e200)
    """
    code, record = evaluate(capsys, tmp_path, source, "regression")
    assert record["status"] == "failed" and record["failure"]["code"] == "predictions_invalid", record["failure"]
    assert "overflow" in record["failure"]["message"]


def test_a_tagging_model_is_scored_without_naming_its_tags(capsys, tmp_path, images_built):
    images_built("sklearn")
    source = """
        import numpy as np

        def predict(batch):
            return np.arange(len(batch)) + 1000
    """
    code, record = evaluate(capsys, tmp_path, source, "classification")
    assert code == 0 and record["status"] == "succeeded", record["failure"]
    metrics = record["metrics"]
    assert metrics["classes"] == [0, 1, 2] and metrics["confusion_matrix"]["matrix"] == [[0] * 3] * 3
    assert sum(metrics["confusion_matrix"]["other"]) == metrics["n_rows"] == 120
    assert all(str(1000 + i) not in json.dumps([metrics["warnings"], metrics["per_class"], metrics["skipped"]])
               for i in range(120))
