"""`evaluator evaluate` end to end with real containers: metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from evaluator.cli import main
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def evaluate(capsys, *args: str) -> tuple[int, dict]:
    code = main(["evaluate", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def proba_matrix(predictions, classes) -> np.ndarray:
    return np.column_stack([predictions[f"proba__{c}"].to_numpy() for c in classes])


def assert_classification_metrics_match_sklearn(record: dict, labels_path, predictions_path) -> None:
    labels = pq.read_table(labels_path).to_pandas()
    predictions = pq.read_table(predictions_path).to_pandas().set_index("row_id").loc[labels["row_id"]]
    y, y_pred = labels["target"].to_numpy(), predictions["prediction"].to_numpy()
    classes = sorted(np.unique(y))
    proba = proba_matrix(predictions, classes)
    expected = {
        "accuracy": skm.accuracy_score(y, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, y_pred),
        "f1_macro": skm.f1_score(y, y_pred, average="macro"),
        "precision_weighted": skm.precision_score(y, y_pred, average="weighted"),
        "recall_macro": skm.recall_score(y, y_pred, average="macro"),
        "log_loss": skm.log_loss(y, proba, labels=classes),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes),
    }
    got = record["metrics"]["metrics"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_sklearn_joblib_bundle_evaluates_end_to_end(capsys, tmp_path, images_built):
    images_built("sklearn")
    x, y, features, labels = fx.classification_data(tmp_path)
    bundle = fx.sklearn_bundle(tmp_path / "model.tar.gz", LogisticRegression(max_iter=500).fit(x, y))
    predictions = tmp_path / "predictions.parquet"

    code, record = evaluate(capsys, "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                            "--task", "classification", "--predictions", str(predictions))

    assert code == 0 and record["status"] == "succeeded" and record["failure"] is None
    assert_classification_metrics_match_sklearn(record, labels, predictions)
    provenance = record["provenance"]
    assert provenance["image"] == "evaluator-sklearn" and provenance["image_id"].startswith("sha256:")
    assert provenance["framework"] == "sklearn" and len(provenance["bundle_sha256"]) == 64
    assert set(provenance["durations_s"]) >= {"preparing", "running", "scoring"}


def test_onnx_bundle_evaluates_end_to_end(capsys, tmp_path, images_built):
    images_built("onnx")
    from skl2onnx import to_onnx

    x, y, features, labels = fx.classification_data(tmp_path, seed=3)
    model = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    onnx_model = to_onnx(model, x[:1].astype(np.float32))
    bundle = fx.tar_gz(tmp_path / "onnx.tgz", {"evaluator.yaml": fx.manifest("onnx", "model.onnx"),
                                               "model.onnx": onnx_model.SerializeToString()})
    predictions = tmp_path / "predictions.parquet"

    code, record = evaluate(capsys, "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                            "--task", "classification", "--predictions", str(predictions))

    assert code == 0, record["failure"]
    assert record["provenance"]["image"] == "evaluator-onnx"
    assert_classification_metrics_match_sklearn(record, labels, predictions)
    # The ONNX model agrees with the estimator it was converted from.
    ours = pq.read_table(predictions).to_pandas()
    assert (ours["prediction"].to_numpy() == model.predict(x.astype(np.float32))).mean() > 0.99


def test_zip_bundle_with_custom_predict_evaluates_a_regression(capsys, tmp_path, images_built):
    images_built("sklearn")
    x, y, features, labels = fx.regression_data(tmp_path)
    fitted = LinearRegression().fit(x, y)
    model = json.dumps({"coef": fitted.coef_.tolist(), "intercept": float(fitted.intercept_)}).encode()
    bundle = fx.zip_file(tmp_path / "linear.zip", {
        "linear/evaluator.yaml": fx.manifest("sklearn", "model.json", "predict.py:predict"),
        "linear/model.json": model,
        "linear/predict.py": fx.LINEAR_PREDICT.encode(),
    })
    predictions = tmp_path / "predictions.parquet"

    code, record = evaluate(capsys, "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                            "--task", "regression", "--predictions", str(predictions))

    assert code == 0, record["failure"]
    table = pq.read_table(predictions).to_pandas().sort_values("row_id")
    assert np.allclose(table["prediction"].to_numpy(), fitted.predict(x))
    got = record["metrics"]["metrics"]
    y_pred = table["prediction"].to_numpy()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, y_pred), rel=1e-9)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, y_pred), rel=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y, y_pred), rel=1e-9)


def test_failed_run_prints_its_code_and_exits_non_zero(capsys, tmp_path, images_built):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    bundle = fx.predict_bundle(tmp_path / "raises.tar.gz", "def predict(batch):\n    raise RuntimeError('boom-42')\n")

    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", "classification"])

    err = capsys.readouterr().err
    assert code == 1
    assert "error: sandbox_error: the model's program failed (exit status 1)" in err
    assert "boom-42" in err  # the log tail is shown to the participant


def test_unsafe_bundle_is_refused_before_any_container(capsys, tmp_path, images_built):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    bundle = fx.tar_gz(tmp_path / "slip.tar.gz", {"evaluator.yaml": fx.manifest("sklearn", "m.joblib"),
                                                  "m.joblib": b"", "../../escape.txt": b"x"})

    code, record = evaluate(capsys, "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                            "--task", "classification")

    assert code == 1 and record["status"] == "failed"
    assert record["failure"]["code"] == "bundle_invalid" and "../../escape.txt" in record["failure"]["message"]
