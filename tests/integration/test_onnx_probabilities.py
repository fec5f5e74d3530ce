"""ONNX models' float32 probabilities (a value at 1.0000001, rows summing to 1.0000004) keep their log_loss."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluator.cli import main
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def rounded_probabilities_model() -> bytes:
    """An ONNX graph whose probabilities are its first three inputs, as float32: what it is given, it emits."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Slice", ["X", "starts", "ends", "axes"], ["probabilities"]),
             helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)]
    constants = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
                 for name, value in (("starts", 0), ("ends", 3), ("axes", 1))]
    graph = helper.make_graph(
        nodes, "rounded", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_float32_rounding_just_past_one_keeps_log_loss(capsys, tmp_path, images_built):
    images_built("onnx")
    # Given float32 probabilities as ONNX models emit them: some a few ulps past 1 (or below 0), rows summing
    # to 1 +- 4e-7 (a random forest's averaged trees do this: 1.0000001192092896)
    over_one = float(np.nextafter(np.float32(1), np.float32(2)))
    rows = [[over_one, 0.0, 0.0], [0.0, 1.0000004, 0.0], [0.2, 0.3, 0.5000004], [1 / 3, 1 / 3, 1 / 3],
            [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]] * 10
    proba32 = np.asarray(rows, dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1, 2] * 10)
    ids = [f"r{i}" for i in range(len(y))]
    features, labels = tmp_path / "features.parquet", tmp_path / "labels.parquet"
    pq.write_table(pa.table({"row_id": ids, **{f"p{j}": proba32[:, j] for j in range(3)},
                             "x": np.zeros(len(y), dtype=np.float32)}), features)
    pq.write_table(pa.table({"row_id": ids, "target": y}), labels)
    bundle = fx.tar_gz(tmp_path / "rounded.tgz", {"evaluator.yaml": fx.manifest("onnx", "model.onnx"),
                                                  "model.onnx": rounded_probabilities_model()})
    predictions = tmp_path / "predictions.parquet"

    # When it is evaluated
    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", "classification", "--predictions", str(predictions), "--json"])
    record = json.loads(capsys.readouterr().out)

    # Then log_loss is scored (not skipped), equal to scikit-learn's on the probabilities clipped into [0, 1]
    assert code == 0, record["failure"]
    proba = pq.read_table(predictions).to_pandas().set_index("row_id").loc[ids]
    matrix = np.column_stack([proba[f"proba__{c}"].to_numpy() for c in range(3)])
    assert matrix.max() > 1.0  # the case itself: as given, scikit-learn refuses it
    document = record["metrics"]
    assert "log_loss" not in document["skipped"], document["skipped"]
    expected = skm.log_loss(y, np.clip(matrix, 0.0, 1.0), labels=[0, 1, 2])
    assert document["metrics"]["log_loss"] == pytest.approx(expected, rel=1e-12)
    assert any("float32" in warning for warning in document["warnings"]), document["warnings"]


def test_probabilities_well_past_one_are_still_refused(capsys, tmp_path, images_built):
    images_built("onnx")
    proba32 = np.asarray([[1.01, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] * 5, dtype=np.float32)
    y = np.array([0, 1, 2] * 5)
    ids = [f"r{i}" for i in range(len(y))]
    features, labels = tmp_path / "features.parquet", tmp_path / "labels.parquet"
    pq.write_table(pa.table({"row_id": ids, **{f"p{j}": proba32[:, j] for j in range(3)},
                             "x": np.zeros(len(y), dtype=np.float32)}), features)
    pq.write_table(pa.table({"row_id": ids, "target": y}), labels)
    bundle = fx.tar_gz(tmp_path / "over.tgz", {"evaluator.yaml": fx.manifest("onnx", "model.onnx"),
                                               "model.onnx": rounded_probabilities_model()})

    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", "classification", "--json"])
    record = json.loads(capsys.readouterr().out)

    assert code == 0, record["failure"]
    assert "outside [0, 1]" in record["metrics"]["skipped"]["log_loss"]
