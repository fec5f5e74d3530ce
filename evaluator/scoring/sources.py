"""Read labels (Parquet or CSV) and predictions (Parquet) in bounded chunks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evaluator.errors import EvaluatorError, PredictionsInvalid
from evaluator.scoring.footer import (  # noqa: F401 - re-exported
    PROBA_PREFIX,
    PredictionLimits,
    PredictionsLayout,
    inspect_predictions,
)

logger = logging.getLogger(__name__)

# NOTE: the CSV reader reads blocks ahead; with 8 MiB blocks and threads it held ~120 MiB for a 94 MiB
# file, with 2 MiB blocks and no threads ~75 MiB, and parsed faster (scoring is not bound by parsing).
_CSV_BLOCK_BYTES = 2 << 20
_PARQUET_BUFFER_BYTES = 1 << 20


def open_parquet(path: Path) -> pq.ParquetFile:
    """Open Parquet for streaming: no pre-buffering, which reads whole row groups ahead."""
    # NOTE: with pyarrow's default pre_buffer=True, iterating a 150 MB file peaked at ~180 MB of
    # Arrow memory; without it, ~40 MB.
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER_BYTES)


@dataclass(frozen=True)
class LabelsSource:
    """A labels file whose batches carry the columns `row_id` and `target`."""

    path: Path
    row_id_column: str
    target_column: str
    chunk_rows: int

    def estimated_rows(self) -> int:
        if _is_parquet(self.path):
            return open_parquet(self.path).metadata.num_rows
        return max(1, self.path.stat().st_size // 8)  # NOTE: a CSV row takes at least ~8 bytes

    def exact_rows(self) -> int | None:
        """The row count a Parquet footer states; None for CSV (counting it would read the file)."""
        return open_parquet(self.path).metadata.num_rows if _is_parquet(self.path) else None

    def batches(self) -> Iterator[pa.RecordBatch]:
        columns = [self.row_id_column, self.target_column]
        names = ["row_id", "target"]
        try:
            if _is_parquet(self.path):
                parquet = open_parquet(self.path)
                _require_columns(parquet.schema_arrow.names, columns, EvaluatorError, "labels")
                for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=columns):
                    yield pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=names)
                return
            options = pacsv.ConvertOptions(include_columns=columns)
            read_options = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=False)
            reader = pacsv.open_csv(self.path, read_options=read_options, convert_options=options)
            for batch in reader:
                for start in range(0, batch.num_rows, self.chunk_rows):
                    part = batch.slice(start, self.chunk_rows)
                    yield pa.RecordBatch.from_arrays([part.column(c) for c in columns], names=names)
        except (pa.ArrowInvalid, KeyError) as ex:
            raise EvaluatorError(f"labels file {self.path.name} could not be read: {ex}") from ex


@dataclass(frozen=True)
class PredictionsSource:
    """A predictions Parquet file: `row_id`, `prediction`, optional `proba__<class>`.

    The model wrote it, so it is untrusted: its footer is checked before anything is decoded
    (footer.inspect_predictions), and every batch is checked while it is (DecodeBudget).
    """

    path: Path
    chunk_rows: int
    with_proba: bool = True
    expected_rows: int | None = None  # the labels' row count, when known
    limits: PredictionLimits = field(default_factory=PredictionLimits)

    @functools.cached_property
    def layout(self) -> PredictionsLayout:
        return inspect_predictions(self.path, limits=self.limits, expected_rows=self.expected_rows,
                                   with_proba=self.with_proba,
                                   chunk_rows=self.chunk_rows)

    def proba_columns(self) -> list[str]:
        return self.layout.proba_columns if self.with_proba else []

    def batches(self) -> Iterator[pa.RecordBatch]:
        layout = self.layout
        columns = ["row_id", "prediction", *self.proba_columns()]
        budget = DecodeBudget(self.limits)
        try:
            parquet = open_parquet(self.path)
            for batch in parquet.iter_batches(batch_size=layout.batch_rows, columns=columns):
                yield from budget.check(batch, layout.string_columns)
        except MemoryError:  # NOTE: ArrowMemoryError too: the caller's memory limit, not a malformed file
            raise
        except (pa.ArrowException, OSError, ValueError) as ex:  # NOTE: ArrowInvalid is a ValueError
            raise PredictionsInvalid(f"predictions file could not be read: {ex}") from ex


class DecodeBudget:
    """Check decoded prediction batches: each string at most max_value_bytes, all at most max_total_bytes.

    Dictionary-typed columns are measured before they are expanded, and expanded a slice at a
    time within max_batch_bytes, so a dictionary that repeats one long value is refused cheaply.
    """

    def __init__(self, limits: PredictionLimits) -> None:
        self.limits = limits
        self.total = 0

    def check(self, batch: pa.RecordBatch, strings: list[str]) -> Iterator[pa.RecordBatch]:
        fixed = sum(batch.column(name).nbytes for name in batch.schema.names if name not in strings)
        dictionary = [name for name in strings if pa.types.is_dictionary(batch.schema.field(name).type)]
        row_bytes = np.zeros(len(batch), dtype=np.int64) if dictionary else None
        for name in strings:
            column = batch.column(name)
            if name in dictionary:
                lengths = self._lengths(name, column.dictionary)
                indices = column.indices.to_numpy(zero_copy_only=False)
                valid = ~column.is_null().to_numpy(zero_copy_only=False)
                assert row_bytes is not None  # allocated when any column is a dictionary
                row_bytes[valid] += lengths[indices[valid].astype(np.int64)]
            else:
                self._lengths(name, column)
                fixed += column.nbytes
        self._charge(fixed + (int(row_bytes.sum()) if row_bytes is not None else 0))
        if not dictionary:
            yield batch
            return
        # NOTE: expand dictionaries a slice at a time, each within max_batch_bytes
        assert row_bytes is not None
        ends = np.cumsum(row_bytes)
        start = 0
        while start < len(batch):
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + self.limits.max_batch_bytes, side="right")))
            part = batch.slice(start, stop - start)
            arrays = [part.column(n).cast(part.schema.field(n).type.value_type) if n in dictionary else part.column(n)
                      for n in part.schema.names]
            yield pa.RecordBatch.from_arrays(arrays, names=part.schema.names)
            start = stop

    def _lengths(self, name: str, values: pa.Array) -> np.ndarray:
        lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
        lengths = np.nan_to_num(lengths, nan=0).astype(np.int64)  # NOTE: nulls have no length
        longest = int(lengths.max(initial=0))
        if longest > self.limits.max_value_bytes:
            what = "row id" if name == "row_id" else "value of column " + repr(name)
            raise PredictionsInvalid(f"predictions.parquet holds a {what} of {longest} bytes; at most "
                                     f"{self.limits.max_value_bytes} bytes are accepted")
        return lengths

    def _charge(self, count: int) -> None:
        self.total += count
        if self.total > self.limits.max_total_bytes:
            raise PredictionsInvalid(f"predictions.parquet decodes to more than {self.limits.max_total_bytes} "
                                     "bytes; that is more than one short row id and prediction per label row")


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _require_columns(names: list[str], required: list[str], error: type[EvaluatorError], what: str) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise error(f"{what} file has no column {', '.join(map(repr, missing))} (columns: {', '.join(names)})")
