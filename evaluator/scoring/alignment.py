"""Join predictions to labels one to one on the row id, in bounded memory.

Two strategies yield the same aligned chunks:
- the fast path walks both files in lockstep while their ids are equal and strictly increasing
  (which also proves there are no duplicates);
- otherwise both files are hash-partitioned on the row id into temporary Arrow IPC files, and
  each partition is sorted and joined in memory.
Anything that does not align one to one is collected in an `AlignmentReport` and raised as
`PredictionsInvalid` once every row has been seen, so the message can give exact counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaluator.errors import EvaluatorError, PredictionsInvalid
from evaluator.scoring import partitions
from evaluator.scoring.partitions import PartitionWriter, sorted_by_id
from evaluator.scoring.sources import PROBA_PREFIX, LabelsSource, PredictionsSource, open_parquet

logger = logging.getLogger(__name__)

PARTITION_ROWS = 1 << 18
PARTITION_BATCH_ROWS = 1 << 18  # rows read at a time while partitioning
_EXAMPLES = 5


@dataclass
class AlignedChunk:
    """Rows of labels and predictions that share their row ids, in the same order."""

    row_ids: pa.Array
    target: pa.Array
    prediction: pa.Array
    proba: dict[str, np.ndarray]  # class name (str(label)) -> float64 probabilities

    def __len__(self) -> int:
        return len(self.row_ids)


@dataclass
class _Problem:
    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, ids: pa.Array) -> None:
        self.count += len(ids)
        room = _EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(ids.slice(0, room).to_pylist())


class AlignmentReport:
    """Count every way the predictions fail to align; raise once, with examples."""

    _PHRASES = {  # (one, many)
        "missing": ("label row has no prediction", "label rows have no prediction"),
        "extra": ("prediction has a row_id that is not in the labels",
                  "predictions have a row_id that is not in the labels"),
        "duplicated": ("prediction repeats a row_id already predicted",
                       "predictions repeat a row_id already predicted"),
        "null_row_id": ("prediction has a null row_id", "predictions have a null row_id"),
        "null_prediction": ("prediction is null", "predictions are null"),
        "non_finite_prediction": ("prediction is not finite (NaN or infinite)",
                                  "predictions are not finite (NaN or infinite)"),
        "bad_proba": ("row has a null or non-finite probability", "rows have a null or non-finite probability"),
    }

    def __init__(self) -> None:
        self.problems = {name: _Problem() for name in self._PHRASES}
        self.n_label_rows = 0

    def add(self, name: str, ids: pa.Array) -> None:
        if len(ids):
            self.problems[name].add(ids)

    @property
    def ok(self) -> bool:
        return all(p.count == 0 for p in self.problems.values())

    def raise_if_invalid(self) -> None:
        if self.ok:
            return
        parts = []
        for name, problem in self.problems.items():
            if problem.count:
                examples = ", ".join(repr(x) for x in problem.examples)
                phrase = self._PHRASES[name][problem.count != 1]
                parts.append(f"{problem.count} {phrase} (e.g. row_id {examples})")
        raise PredictionsInvalid(
            f"predictions do not align one to one with the {self.n_label_rows} label rows: " + "; ".join(parts)
        )


class _NotSameOrder(Exception):
    """Raised inside the fast path when the files are not in the same strictly increasing order."""


def _check_values(chunk: AlignedChunk, numeric: bool, report: AlignmentReport) -> None:
    nulls = chunk.prediction.is_null()
    if chunk.prediction.null_count:
        report.add("null_prediction", chunk.row_ids.filter(nulls))
    if numeric and len(chunk):
        values = chunk.prediction.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        bad = ~np.isfinite(values) & ~nulls.to_numpy(zero_copy_only=False)
        if bad.any():
            report.add("non_finite_prediction", chunk.row_ids.filter(pa.array(bad)))
    if chunk.proba:
        bad = np.zeros(len(chunk), dtype=bool)
        for values in chunk.proba.values():
            bad |= ~np.isfinite(values)
        if bad.any():
            report.add("bad_proba", chunk.row_ids.filter(pa.array(bad)))


def _normalize_predictions(batch: pa.RecordBatch, id_type: pa.DataType, numeric: bool) -> pa.RecordBatch:
    """Cast prediction ids to the labels' id type and check the prediction column's type."""
    row_ids = batch.column("row_id")
    if row_ids.type != id_type:
        try:
            row_ids = pc.cast(row_ids, id_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as ex:
            raise PredictionsInvalid(f"prediction row_id of type {batch.column('row_id').type} "
                                     f"does not match the labels' row_id type {id_type}: {ex}") from ex
    prediction = batch.column("prediction")
    if numeric and not (pa.types.is_integer(prediction.type) or pa.types.is_floating(prediction.type)
                        or pa.types.is_null(prediction.type)):
        raise PredictionsInvalid(f"regression predictions must be numbers, got column type {prediction.type}")
    columns = [row_ids, prediction]
    for name in batch.schema.names[2:]:
        column = batch.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise PredictionsInvalid(f"probability column {name!r} must be numeric, got {column.type}")
        columns.append(pc.cast(column, pa.float64()))
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _chunk(row_ids: pa.Array, target: pa.Array, preds: pa.RecordBatch | pa.Table) -> AlignedChunk:
    proba = {}
    for name in preds.schema.names[2:]:
        column = preds.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        proba[name[len(PROBA_PREFIX):]] = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    prediction = preds.column("prediction")
    if isinstance(prediction, pa.ChunkedArray):
        prediction = prediction.combine_chunks()
    return AlignedChunk(row_ids, target, prediction, proba)


def _check_labels(batch: pa.RecordBatch) -> None:
    if batch.column("row_id").null_count or batch.column("target").null_count:
        raise EvaluatorError("labels file has null row ids or targets")


def same_order_chunks(labels: LabelsSource, predictions: PredictionsSource, *, numeric: bool,
                      report: AlignmentReport) -> Iterator[AlignedChunk]:
    """Yield aligned chunks while both files hold the same strictly increasing ids.

    Raises `_NotSameOrder` as soon as they do not; the caller starts over with partitions.
    """
    label_batches, pred_batches = labels.batches(), predictions.batches()
    label, pred = None, None
    last_id = None
    while True:
        if label is None or len(label) == 0:
            label = next(label_batches, None)
            if label is not None:
                _check_labels(label)
        if pred is None or len(pred) == 0:
            pred = next(pred_batches, None)
            if pred is not None:
                pred = _normalize_predictions(pred, label.schema.field("row_id").type if label is not None
                                              else pred.schema.field("row_id").type, numeric)
        if label is None or pred is None:
            if label is None and pred is None:
                return
            raise _NotSameOrder("one file has more rows")
        size = min(len(label), len(pred))
        label_ids, pred_ids = label.column("row_id").slice(0, size), pred.column("row_id").slice(0, size)
        if pred_ids.null_count or not pc.all(pc.equal(label_ids, pred_ids)).as_py():
            raise _NotSameOrder("ids differ")
        if size > 1 and not pc.all(pc.less(label_ids.slice(0, size - 1), label_ids.slice(1))).as_py():
            raise _NotSameOrder("ids not strictly increasing")
        if last_id is not None and not pc.less(last_id, label_ids[0]).as_py():
            raise _NotSameOrder("ids not strictly increasing across chunks")
        last_id = label_ids[size - 1]
        chunk = _chunk(label_ids, label.column("target").slice(0, size), pred.slice(0, size))
        report.n_label_rows += size
        _check_values(chunk, numeric, report)
        yield chunk
        label, pred = label.slice(size), pred.slice(size)


def _duplicated(sorted_ids: pa.Array) -> np.ndarray:
    if len(sorted_ids) < 2:
        return np.zeros(len(sorted_ids), dtype=bool)
    same = pc.equal(sorted_ids.slice(1), sorted_ids.slice(0, len(sorted_ids) - 1)).to_numpy(zero_copy_only=False)
    return np.concatenate([[False], same])


def partitioned_chunks(labels: LabelsSource, predictions: PredictionsSource, directory: Path, *, numeric: bool,
                       report: AlignmentReport, chunk_rows: int) -> Iterator[AlignedChunk]:
    """Hash-partition both files on disk, then join each partition in memory."""
    n = max(1, min(partitions.MAX_PARTITIONS, math.ceil(labels.estimated_rows() / PARTITION_ROWS)))
    label_parts, pred_parts = PartitionWriter(directory, "labels", n), PartitionWriter(directory, "predictions", n)
    id_type, label_schema = None, None
    for batch in replace(labels, chunk_rows=PARTITION_BATCH_ROWS).batches():
        _check_labels(batch)
        id_type, label_schema = batch.schema.field("row_id").type, batch.schema
        label_parts.write(batch)
    if label_schema is None:
        raise EvaluatorError("labels file has no rows")
    label_parts.close(label_schema)
    pred_schema = None
    for batch in replace(predictions, chunk_rows=PARTITION_BATCH_ROWS).batches():
        batch = _normalize_predictions(batch, id_type, numeric)
        pred_schema = batch.schema
        ids = batch.column("row_id")
        if ids.null_count:
            report.add("null_row_id", ids.filter(ids.is_null()))
            batch = batch.filter(ids.is_valid())
        pred_parts.write(batch)
    if pred_schema is None:
        pred_schema = _normalize_predictions(
            pa.RecordBatch.from_pylist([], schema=_empty_schema(predictions)), id_type, numeric).schema
    pred_parts.close(pred_schema)
    pa.default_memory_pool().release_unused()  # NOTE: mimalloc otherwise keeps the partitioning buffers

    for i in range(n):
        pa.default_memory_pool().release_unused()
        label_table, pred_table = label_parts.read(i), pred_parts.read(i)
        label_table, pred_table = sorted_by_id(label_table), sorted_by_id(pred_table)
        label_ids = label_table.column("row_id").combine_chunks()
        pred_ids = pred_table.column("row_id").combine_chunks()
        report.n_label_rows += len(label_ids)
        if _duplicated(label_ids).any():
            raise EvaluatorError("labels file repeats a row id; the dataset is invalid")
        duplicated = _duplicated(pred_ids)
        if duplicated.any():
            report.add("duplicated", pred_ids.filter(pa.array(duplicated)))
            pred_table = pred_table.filter(pa.array(~duplicated))
            pred_ids = pred_table.column("row_id").combine_chunks()
        if not label_ids.equals(pred_ids):  # NOTE: equal sorted ids (the usual case) need no set lookups
            report.add("missing", label_ids.filter(pc.invert(pc.is_in(label_ids, value_set=pred_ids))))
            report.add("extra", pred_ids.filter(pc.invert(pc.is_in(pred_ids, value_set=label_ids))))
        if not report.ok:
            continue  # NOTE: keep counting problems in later partitions, but stop scoring
        target = label_table.column("target").combine_chunks()
        for start in range(0, len(label_ids), chunk_rows):
            chunk = _chunk(label_ids.slice(start, chunk_rows), target.slice(start, chunk_rows),
                           pred_table.slice(start, chunk_rows))
            _check_values(chunk, numeric, report)
            yield chunk


def _empty_schema(predictions: PredictionsSource) -> pa.Schema:
    schema = open_parquet(predictions.path).schema_arrow
    return pa.schema([schema.field(name) for name in ["row_id", "prediction", *predictions.proba_columns()]])
