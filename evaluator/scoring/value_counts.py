"""Exact counts per distinct value, in ascending order, with bounded memory.

ROC AUC and the median need every value in order. `SortedValueCounts` keeps a histogram
(distinct value -> count per code) in memory while it is small; past `max_in_memory` distinct
values it spills records to an Arrow IPC file and, when read, range-partitions that file on
disk (boundaries from a thinned sample, then recursively from the values themselves) until each
partition's histogram fits. The result is exact; only the amount of disk I/O depends on the data.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_MEMORY = 1 << 16
_SAMPLE_SIZE = 1 << 15
_MAX_FANOUT = 64
_SCHEMA = pa.schema([("value", pa.float64()), ("code", pa.int32()), ("count", pa.int64())])

Histogram = tuple[np.ndarray, np.ndarray]  # sorted distinct values, counts of shape (n_values, n_codes)


def histogram(values: np.ndarray, codes: np.ndarray, n_codes: int, counts: np.ndarray | None = None) -> Histogram:
    """Count (value, code) records; `counts` weighs each record (default 1)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    flat = np.bincount(inverse * n_codes + codes, weights=counts, minlength=len(distinct) * n_codes)
    return distinct, flat.astype(np.int64).reshape(len(distinct), n_codes)


def merge(a: Histogram, b: Histogram) -> Histogram:
    """Add two histograms."""
    if len(a[0]) == 0:
        return b
    distinct, inverse = np.unique(np.concatenate([a[0], b[0]]), return_inverse=True)
    counts = np.zeros((len(distinct), a[1].shape[1]), dtype=np.int64)
    counts[inverse[: len(a[0])]] += a[1]
    counts[inverse[len(a[0]) :]] += b[1]
    return distinct, counts


class SortedValueCounts:
    """Accumulate (value, code) records; iterate exact counts per distinct value in order."""

    def __init__(self, n_codes: int, directory: Path, *, max_in_memory: int = DEFAULT_MAX_IN_MEMORY) -> None:
        self.n_codes = n_codes
        self.max_in_memory = max_in_memory
        self.n_records = 0
        self._directory = directory
        self._hist: Histogram = (np.zeros(0), np.zeros((0, n_codes), dtype=np.int64))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._spill: pa.ipc.RecordBatchFileWriter | None = None
        self._spill_path: Path | None = None
        self._sample: list[np.ndarray] = []
        self._sample_rows = 0
        self._stride = 1

    @property
    def spilled(self) -> bool:
        return self._spill_path is not None

    def add(self, values: np.ndarray, codes: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=np.float64)
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        self.n_records += len(values)
        if self.spilled:
            self._write(values, codes, np.ones(len(values), dtype=np.int64))
            return
        self._pending.append((values, codes))
        self._pending_rows += len(values)
        if self._pending_rows >= self.max_in_memory:
            self._consolidate()
            if len(self._hist[0]) > self.max_in_memory:
                self._start_spilling()

    def __iter__(self) -> Iterator[Histogram]:
        """Yield histograms of increasing, non-overlapping value ranges."""
        if not self.spilled:
            self._consolidate()
            if len(self._hist[0]):
                yield self._hist
            return
        self._spill.close()
        path, self._spill, self._spill_path = self._spill_path, None, None
        sample = np.unique(np.concatenate(self._sample))
        fanout = max(2, min(_MAX_FANOUT, math.ceil(self.n_records / self.max_in_memory)))
        for part in self._split(path, _boundaries(sample, fanout)):
            yield from self._emit(part)

    def _consolidate(self) -> None:
        if self._pending:
            values = np.concatenate([v for v, _ in self._pending])
            codes = np.concatenate([c for _, c in self._pending])
            self._hist = merge(self._hist, histogram(values, codes, self.n_codes))
            self._pending, self._pending_rows = [], 0

    def _start_spilling(self) -> None:
        self._spill_path = self._directory / f"values-{uuid.uuid4().hex}.arrow"
        self._spill = pa.ipc.new_file(self._spill_path, _SCHEMA)
        distinct, counts = self._hist
        rows, codes = np.nonzero(counts)
        self._write(distinct[rows], codes.astype(np.int32), counts[rows, codes])
        self._hist = (np.zeros(0), np.zeros((0, self.n_codes), dtype=np.int64))
        logger.debug("Spilling value counts to %s", self._spill_path)

    def _write(self, values: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> None:
        self._spill.write_batch(pa.RecordBatch.from_arrays([values, codes, counts], schema=_SCHEMA))
        self._sample.append(values[:: self._stride])
        self._sample_rows += len(self._sample[-1])
        if self._sample_rows > 2 * _SAMPLE_SIZE:
            # NOTE: thinning keeps the sample roughly uniform over the whole stream.
            self._sample = [np.concatenate(self._sample)[::2]]
            self._sample_rows = len(self._sample[0])
            self._stride *= 2

    def _emit(self, path: Path) -> Iterator[Histogram]:
        hist: Histogram = (np.zeros(0), np.zeros((0, self.n_codes), dtype=np.int64))
        for batch in _read(path):
            hist = merge(hist, histogram(*_columns(batch), self.n_codes, _counts(batch)))
            if len(hist[0]) > self.max_in_memory:
                # Too many distinct values: split on values actually present, which always makes progress.
                parts = self._split(path, _boundaries(hist[0], _MAX_FANOUT))
                del hist
                for part in parts:
                    yield from self._emit(part)
                return
        path.unlink()
        if len(hist[0]):
            yield hist

    def _split(self, path: Path, boundaries: np.ndarray) -> list[Path]:
        paths = [self._directory / f"values-{uuid.uuid4().hex}.arrow" for _ in range(len(boundaries) + 1)]
        writers = [pa.ipc.new_file(p, _SCHEMA) for p in paths]
        for batch in _read(path):
            values = batch.column(0).to_numpy()
            part = np.searchsorted(boundaries, values, side="left")
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(len(paths) + 1))
            ordered = batch.take(pa.array(order))
            for i, writer in enumerate(writers):
                if bounds[i + 1] > bounds[i]:
                    writer.write_batch(ordered.slice(bounds[i], bounds[i + 1] - bounds[i]))
        for writer in writers:
            writer.close()
        path.unlink()
        return paths


def _boundaries(sorted_distinct: np.ndarray, fanout: int) -> np.ndarray:
    """Pick up to fanout-1 of the values as upper bounds of partitions (inclusive)."""
    if len(sorted_distinct) <= 1:
        return sorted_distinct[:1]
    positions = np.linspace(0, len(sorted_distinct) - 1, fanout + 1)[1:-1].astype(np.int64)
    return np.unique(sorted_distinct[positions])


def _read(path: Path) -> Iterator[pa.RecordBatch]:
    # NOTE: plain reads, not a memory map: mapped pages of a large spill file count as resident memory.
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _columns(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    return batch.column(0).to_numpy(), batch.column(1).to_numpy()


def _counts(batch: pa.RecordBatch) -> np.ndarray:
    return batch.column(2).to_numpy().astype(np.float64)
