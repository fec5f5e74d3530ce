"""A code-only bundle (a `predict` entry point and no model file) is a valid manifest; `model` stays checked."""

from __future__ import annotations

import pytest

from evaluator.bundles import read_manifest
from evaluator.errors import BundleInvalid


def test_a_predict_entry_point_without_a_model_is_accepted(tmp_path):
    manifest = "name: rule\nversion: 1\nframework: sklearn\npredict: predict.py:predict\n"
    (tmp_path / "evaluator.yaml").write_text(manifest)
    (tmp_path / "predict.py").write_text("def predict(batch):\n    return [0] * len(batch)\n")

    manifest = read_manifest(tmp_path)

    assert manifest.model is None and manifest.predict == "predict.py:predict"
    assert "model" not in manifest.to_dict()


@pytest.mark.parametrize("text,message", [
    ("name: x\nversion: 1\nframework: sklearn\n", "'model' is required"),
    ("name: x\nversion: 1\nframework: sklearn\npredict: predict.py:predict\nmodel: ''\n", "'model' must name"),
    ("name: x\nversion: 1\nframework: sklearn\npredict: predict.py:predict\nmodel: gone.bin\n", "does not exist"),
])
def test_model_is_still_required_without_predict_and_checked_when_given(tmp_path, text, message):
    (tmp_path / "evaluator.yaml").write_text(text)
    (tmp_path / "predict.py").write_text("def predict(batch):\n    return []\n")

    with pytest.raises(BundleInvalid, match=message):
        read_manifest(tmp_path)
