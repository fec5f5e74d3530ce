"""Predictions that do not align one to one with the labels are refused, with specifics."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.errors import PredictionsInvalid
from evaluator.scoring import score_files
from tests.unit.test_scoring_helpers import write_labels, write_predictions

IDS = list(range(100, 110))
Y = [0, 1] * 5


def _score(tmp_path, pred_ids, preds, task="classification", proba=None, labels=(IDS, Y)):
    labels_path = write_labels(tmp_path / "labels", *labels)
    predictions = write_predictions(tmp_path / "p.parquet", pred_ids, preds, proba)
    return score_files(task, labels_path, predictions, chunk_rows=4)


def _refusal(tmp_path, *args, **kwargs) -> str:
    with pytest.raises(PredictionsInvalid) as info:
        _score(tmp_path, *args, **kwargs)
    assert info.value.code == "predictions_invalid"
    return info.value.message


def test_missing_predictions_are_counted_with_example_ids(tmp_path):
    message = _refusal(tmp_path, IDS[:7], Y[:7])
    assert "3 label rows have no prediction (e.g. row_id 107, 108, 109)" in message
    assert "with the 10 label rows" in message


def test_extra_predictions_are_refused_not_truncated(tmp_path):
    message = _refusal(tmp_path, IDS + [999, 1000], Y + [0, 1])
    assert "2 predictions have a row_id that is not in the labels (e.g. row_id 999, 1000)" in message


def test_duplicated_predictions_are_refused(tmp_path):
    message = _refusal(tmp_path, IDS + [103, 103], Y + [1, 1])
    assert "2 predictions repeat a row_id already predicted (e.g. row_id 103, 103)" in message


def test_duplicates_replacing_rows_report_both_duplicate_and_missing(tmp_path):
    message = _refusal(tmp_path, IDS[:-1] + [100], Y)
    assert "1 prediction repeats a row_id" in message and "1 label row has no prediction (e.g. row_id 109)" in message


def test_misaligned_order_is_joined_on_row_id_not_position(tmp_path):
    # Given predictions in reverse order, each correct for its own row id
    doc = _score(tmp_path, IDS[::-1], Y[::-1])
    assert doc["metrics"]["accuracy"] == 1.0
    # And the same predictions shifted by one position are a different, wrong submission
    doc = _score(tmp_path, IDS, Y[1:] + Y[:1])
    assert doc["metrics"]["accuracy"] == 0.0


def test_null_predictions_are_refused(tmp_path):
    message = _refusal(tmp_path, IDS, [0, None, 1, None] + Y[4:])
    assert "2 predictions are null (e.g. row_id 101, 103)" in message


@pytest.mark.parametrize("bad, word", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_non_finite_regression_predictions_are_refused(tmp_path, bad, word):
    preds = [1.0] * 10
    preds[4] = bad
    message = _refusal(tmp_path, IDS, preds, task="regression", labels=(IDS, [1.0] * 10))
    assert "1 prediction is not finite (NaN or infinite) (e.g. row_id 104)" in message


def test_non_finite_probabilities_are_refused(tmp_path):
    p1 = [0.5] * 10
    p1[2] = math.nan
    message = _refusal(tmp_path, IDS, Y, proba={"0": [0.5] * 10, "1": p1})
    assert "1 row has a null or non-finite probability (e.g. row_id 102)" in message


def test_null_row_ids_are_refused(tmp_path):
    message = _refusal(tmp_path, IDS[:9] + [None], Y)
    assert "1 prediction has a null row_id" in message and "(e.g. row_id 109)" in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = _refusal(tmp_path, IDS[2:] + [5, 5, 6], Y[2:] + [None, 1, 0])
    for phrase in ("2 label rows have no prediction", "2 predictions have a row_id that is not in the labels",
                   "1 prediction repeats a row_id"):
        assert phrase in message


def test_string_predictions_for_integer_labels_are_refused(tmp_path):
    message = _refusal(tmp_path, IDS, [str(v) for v in Y])
    assert "labels are integers" in message


def test_text_regression_predictions_are_refused(tmp_path):
    message = _refusal(tmp_path, IDS, ["1.0"] * 10, task="regression", labels=(IDS, [1.0] * 10))
    assert "must be numbers" in message


def test_a_predictions_file_without_prediction_column_is_refused(tmp_path):
    pq.write_table(pa.table({"row_id": IDS, "label": Y}), tmp_path / "p.parquet")
    with pytest.raises(PredictionsInvalid, match="no column 'prediction'"):
        score_files("classification", write_labels(tmp_path / "labels", IDS, Y), tmp_path / "p.parquet")


def test_a_predictions_file_that_is_not_parquet_is_refused(tmp_path):
    (tmp_path / "p.parquet").write_text("row_id,prediction\n1,2\n")
    with pytest.raises(PredictionsInvalid, match="not a readable Parquet file"):
        score_files("classification", write_labels(tmp_path / "labels", IDS, Y), tmp_path / "p.parquet")


def test_string_row_ids_in_csv_labels_join_with_parquet_predictions(tmp_path):
    ids = [f"r{i}" for i in range(10)]
    labels = write_labels(tmp_path / "labels", ids, ["x", "y"] * 5, fmt="csv")
    predictions = write_predictions(tmp_path / "p.parquet", ids[::-1], ["x", "y"] * 5)
    doc = score_files("classification", labels, predictions)
    assert doc["metrics"]["accuracy"] == 0.0 and doc["classes"] == ["x", "y"]
