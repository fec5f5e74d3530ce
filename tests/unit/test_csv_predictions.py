"""The predictions-CSV converter: every cap refuses with a sentence; what passes is typed for the scorer."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.errors import PredictionsInvalid
from evaluator.scoring.csv_predictions import CsvLimits, convert, max_rows_for
from evaluator.storage import layout

CAPS = CsvLimits(max_rows=10, max_line_bytes=4096)


def converted(tmp_path, data: bytes, caps: CsvLimits = CAPS, **options) -> pa.Table:
    source = tmp_path / "preds.csv"
    source.write_bytes(data)
    convert(source, tmp_path / "preds.parquet", caps=caps, **options)
    return pq.read_table(tmp_path / "preds.parquet")


@pytest.mark.parametrize("data, types", [
    (b"row_id,prediction,proba__0,proba__1\n1,0,0.9,0.1\n2,1,0.2,0.8\n",
     [pa.int64(), pa.int64(), pa.float64(), pa.float64()]),
    (b"row_id,prediction\nr1,cat\nr2,dog\n", [pa.string(), pa.string()]),
    (b"row_id,prediction\r\n1,1.5\r\n2,3\r\n", [pa.int64(), pa.float64()]),
    (b"\xef\xbb\xbfrow_id,prediction\n12345678901234567890,1\n", [pa.string(), pa.int64()]),  # BOM; id past int64
    (b"row_id,prediction\n", [pa.int64(), pa.int64()]),
])
def test_valid_files_keep_their_values_with_the_types_the_scorer_reads(tmp_path, data, types):
    assert converted(tmp_path, data).schema.types == types


@pytest.mark.parametrize("data, words", [
    (b"", "is empty"),
    (b"1,2\n3,4\n", "no column 'row_id', 'prediction'"),
    (b"row_id,prediction,extra\n1,2,3\n", "unexpected column 'extra'"),
    (b"row_id,prediction,row_id\n1,2,3\n", "more than one column named 'row_id'"),
    (b"row_\xffid,prediction\n1,2\n", "not UTF-8"),
    (b"row_id,prediction\n1,\xff\xfe\n", "not valid UTF-8"),
    (b"row_id,prediction\n1," + b"x" * 2000 + b"\n", "line 2: a prediction of 2000 bytes"),
    (b"row_id,prediction\n1," + b"x" * 9000 + b"\n", "a line longer than 4096 bytes"),
    (b"row_id,prediction\n" + b"".join(b"%d,1\n" % i for i in range(11)), "more than 10 rows"),
    (b"row_id,prediction\n1,2,3\n", "wrong number of fields"),
    (b"row_id,prediction,proba__1\n1,1,abc\n", "probability that is not a number"),
    (b"row_id,prediction," + b",".join(b"proba__%d" % i for i in range(1001)) + b"\n", "columns; at most 1002"),
])
def test_hostile_files_are_refused_with_an_actionable_sentence(tmp_path, data, words):
    caps = CsvLimits(max_rows=10, max_line_bytes=4096 if b"proba__1000" not in data else 1 << 20)
    with pytest.raises(PredictionsInvalid) as refused:
        converted(tmp_path, data, caps)
    assert words in refused.value.message


def test_regression_files_hold_no_probabilities(tmp_path):
    with pytest.raises(PredictionsInvalid, match="regression"):
        converted(tmp_path, b"row_id,prediction,proba__1\n1,1,0.5\n", with_proba=False)


def test_the_row_cap_follows_the_parquet_footer_rule_and_keys_take_both_kinds():
    assert max_rows_for(100) == 1224
    assert layout.submission_extension("Preds.CSV") == ("predictions", ".csv")
    assert layout.submission_extension("m.tar.gz") == ("bundle", ".tar.gz")
    assert layout.submission_extension("m.txt") is None
    key = layout.parse_bundle_key("bundles/iris/alice/p/1/0b7c.parquet")
    assert key is not None and key.ext == ".parquet" and key.stem == "0b7c"
    assert layout.parse_bundle_key("bundles/iris/alice/p/1/.csv") is None
