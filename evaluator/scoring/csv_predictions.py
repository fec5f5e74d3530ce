"""A participant's predictions CSV, converted to the Parquet file the checked scorer reads.

A prediction-file submission is as hostile as a sandbox's output, and a CSV promises
nothing before it is read, so the conversion bounds everything as it streams:

- the header line: at most `max_line_bytes`, valid UTF-8, the columns a predictions file
  holds (`row_id`, `prediction`, optional `proba__<class>`), each once;
- every line: at most `max_line_bytes` (Arrow's block size: a longer one cannot be parsed);
- every field: at most `limits.max_value_bytes` (the Parquet reader's cap on a row id or class);
- the rows: at most `max_rows` (twice the labels' rows and a little: a few too many still get
  the alignment report that names them);
- UTF-8: checked by Arrow's reader on every string field.

It runs in the scoring child (evaluator.isolated_scoring), under its memory limit. Row ids and
predictions are typed once the whole file is seen (int64 when every value is an integer, float64
for a prediction when every value is a number, else strings), then the Parquet file goes through
the same footer checks and decode budget as a sandbox's predictions (footer, sources).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evaluator.errors import PredictionsInvalid
from evaluator.scoring.footer import PROBA_PREFIX, PredictionLimits, check_column_names

_INTEGER = r"^-?[0-9]{1,18}$"  # NOTE: 18 digits always fit int64; longer ids stay strings
_WHAT = "predictions.csv"


@dataclasses.dataclass(frozen=True)
class CsvLimits:
    """Caps on a predictions CSV, beside the Parquet reader's own (`limits`)."""

    max_rows: int
    max_line_bytes: int = 1 << 20
    limits: PredictionLimits = dataclasses.field(default_factory=PredictionLimits)


def max_rows_for(expected_rows: int | None) -> int:
    """The row cap of a CSV predicting `expected_rows` rows: the Parquet footer check's own rule."""
    return 2 * expected_rows + 1024 if expected_rows is not None else 50_000_000


def convert(source: Path, dest: Path, *, caps: CsvLimits, with_proba: bool = True) -> int:
    """Write `source` (a predictions CSV) as Parquet at `dest`; return its row count.

    Raises:
        PredictionsInvalid: a cap is exceeded, the file is not UTF-8 CSV, or a column is wrong.
    """
    names = _header(source, caps, with_proba)
    types = {name: (pa.float64() if name.startswith(PROBA_PREFIX) else pa.string()) for name in names}
    staged = dest.with_suffix(".staged.parquet")
    rows, integer, numeric = 0, {"row_id": True, "prediction": True}, {"prediction": True}
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=caps.max_line_bytes, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=names, check_utf8=True,
                                                 null_values=[""], strings_can_be_null=True,
                                                 quoted_strings_can_be_null=False))
        schema = pa.schema([(name, types[name]) for name in names])
        with pq.ParquetWriter(staged, schema) as writer:
            for batch in reader:
                rows += batch.num_rows
                if rows > caps.max_rows:
                    raise PredictionsInvalid(f"{_WHAT} has more than {caps.max_rows} rows; write exactly one row "
                                             "per row of the features")
                for name in ("row_id", "prediction"):
                    column = batch.column(name)
                    _check_lengths(column, name, rows - batch.num_rows, caps.limits)
                    present = column.drop_null()
                    if integer[name] and len(present):
                        integer[name] = bool(pc.all(pc.match_substring_regex(present, _INTEGER)).as_py())
                    if name in numeric and numeric[name] and not integer[name] and len(present):
                        numeric[name] = _all_numbers(present)
                writer.write_batch(batch.select(names))
    except PredictionsInvalid:
        raise
    except MemoryError:
        raise
    except (pa.ArrowException, OSError, ValueError) as ex:  # NOTE: ArrowInvalid is a ValueError
        raise PredictionsInvalid(_explain(ex, caps)) from None
    _typed(staged, dest, names, integer, numeric)
    staged.unlink(missing_ok=True)
    return rows


def _header(source: Path, caps: CsvLimits, with_proba: bool) -> list[str]:
    with source.open("rb") as handle:
        head = handle.read(caps.max_line_bytes + 1)
    if not head.strip():
        raise PredictionsInvalid(f"{_WHAT} is empty: write a header line `row_id,prediction` and one row per row "
                                 "of the features")
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) > caps.max_line_bytes:
        raise PredictionsInvalid(f"{_WHAT} has a header line longer than {caps.max_line_bytes} bytes")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise PredictionsInvalid(f"{_WHAT} is not UTF-8 text (its header line is not); save it as UTF-8") from None
    names = next(csv.reader(io.StringIO(text)), [])
    proba = check_column_names(names, _WHAT, ": its first line must name the columns, e.g. row_id,prediction")
    if proba and not with_proba:
        raise PredictionsInvalid(f"{_WHAT} has {PROBA_PREFIX} columns; a regression predictions file holds row_id "
                                 "and prediction only")
    if len(names) > caps.limits.max_columns:
        raise PredictionsInvalid(f"{_WHAT} has {len(names)} columns; at most {caps.limits.max_columns} are accepted")
    return names


def _check_lengths(column: pa.Array, name: str, first_row: int, limits: PredictionLimits) -> None:
    if not len(column) or column.null_count == len(column):
        return
    lengths = pc.binary_length(column)
    longest = pc.max(lengths).as_py() or 0
    if longest > limits.max_value_bytes:
        line = first_row + 2 + int(pc.index(lengths, longest).as_py())  # 1-based, after the header
        raise PredictionsInvalid(f"{_WHAT} line {line}: a {name} of {longest} bytes; at most "
                                 f"{limits.max_value_bytes} bytes are accepted")


def _all_numbers(values: pa.Array) -> bool:
    try:
        pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _typed(staged: Path, dest: Path, names: list[str], integer: dict, numeric: dict) -> None:
    """Rewrite the staged strings with the columns' types, now that every value was seen."""
    target = {name: pa.float64() for name in names}
    target["row_id"] = pa.int64() if integer["row_id"] else pa.string()
    target["prediction"] = (pa.int64() if integer["prediction"] else pa.float64() if numeric["prediction"]
                            else pa.string())
    schema = pa.schema([(name, target[name]) for name in names])
    parquet = pq.ParquetFile(staged)
    with pq.ParquetWriter(dest, schema) as writer:
        for batch in parquet.iter_batches(batch_size=1 << 16):
            writer.write_batch(pa.RecordBatch.from_arrays(
                [pc.cast(batch.column(name), target[name]) for name in names], schema=schema))


def _explain(ex: Exception, caps: CsvLimits) -> str:
    """Arrow's reason, as a sentence for the participant (quoted text capped)."""
    reason = str(ex)
    if "straddling" in reason or "straddles" in reason:
        return (f"{_WHAT} has a line longer than {caps.max_line_bytes} bytes; write one short row id and "
                "prediction per line")
    if "UTF8" in reason or "UTF-8" in reason:
        return f"{_WHAT} is not valid UTF-8 text; save it as UTF-8"
    if "Expected" in reason and "columns" in reason:
        return f"{_WHAT} has a line with the wrong number of fields: {reason[:200]}"
    if "float" in reason or "double" in reason:
        return f"{_WHAT} has a probability that is not a number: {reason[:200]}"
    return f"{_WHAT} could not be read as CSV: {reason[:200]}"
