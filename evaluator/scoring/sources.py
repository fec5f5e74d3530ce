"""Read labels (Parquet or CSV) and predictions (Parquet) in bounded chunks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evaluator.errors import EvaluatorError, PredictionsInvalid

logger = logging.getLogger(__name__)

PROBA_PREFIX = "proba__"
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
    """A predictions Parquet file: `row_id`, `prediction`, optional `proba__<class>`."""

    path: Path
    chunk_rows: int
    with_proba: bool = True

    def proba_columns(self) -> list[str]:
        names = self._schema().names
        _require_columns(names, ["row_id", "prediction"], PredictionsInvalid, "predictions")
        if not self.with_proba:
            return []
        return [name for name in names if name.startswith(PROBA_PREFIX)]

    def batches(self) -> Iterator[pa.RecordBatch]:
        columns = ["row_id", "prediction", *self.proba_columns()]
        try:
            parquet = open_parquet(self.path)
            yield from parquet.iter_batches(batch_size=self.chunk_rows, columns=columns)
        except (pa.ArrowInvalid, OSError) as ex:
            raise PredictionsInvalid(f"predictions file could not be read: {ex}") from ex

    def _schema(self) -> pa.Schema:
        try:
            return open_parquet(self.path).schema_arrow
        except (pa.ArrowInvalid, OSError) as ex:
            raise PredictionsInvalid(f"predictions are not a readable Parquet file: {ex}") from ex


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _require_columns(names: list[str], required: list[str], error: type[EvaluatorError], what: str) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise error(f"{what} file has no column {', '.join(map(repr, missing))} (columns: {', '.join(names)})")
