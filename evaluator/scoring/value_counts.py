"""Exact counts per distinct value, in ascending order, within a memory budget.

ROC AUC and the median need every value in order. `SortedValueCounts` keeps the values it is
given in memory, split by code (8 bytes a value) and sorted into runs of up to `RUN_VALUES`; a run
with many ties is kept as (distinct value, count) pairs instead. Only when the runs outgrow the
budget (`max_in_memory` values' worth of bytes) are they merged into one weighted run in a spill
file, and memory starts over. Reading merges every run, in memory and on disk, a block at a
time (`sorted_runs`). The counts are exact whatever the data; below the budget nothing touches
disk, and each value is sorted once and written to disk at most once.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evaluator.scoring.sorted_runs import DiskRun, Histogram, MemoryRun, SpillFile, distinct_steps, run_lengths

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_MEMORY = 1 << 24  # values (8 bytes each): 128 MiB
RUN_VALUES = 1 << 20  # values sorted at a time (a sort's transient copy stays small)
MERGE_VALUES = 1 << 18  # values in hand while merging runs
MAX_MEMORY_RUNS = 256  # past this many runs (tied data compresses well) they are merged to disk anyway
_ITEM = np.dtype(np.float64).itemsize


class SortedValueCounts:
    """Accumulate (value, code) records; iterate exact counts per distinct value in order."""

    def __init__(self, n_codes: int, directory: Path, *, max_in_memory: int = DEFAULT_MAX_IN_MEMORY) -> None:
        self.n_codes = n_codes
        self.max_in_memory = max(1, max_in_memory)
        self.n_records = 0
        self._directory = directory
        # NOTE: values are copied into one fixed-size buffer per code and sorted there, in place: no
        # small pieces to concatenate, which left the allocator's heap fragmented (RSS well above the data).
        self._buffers: list[np.ndarray | None] = [None] * n_codes
        self._filled = [0] * n_codes
        self._runs: list[MemoryRun] = []
        self._held_bytes = 0
        self._spill: SpillFile | None = None
        self._disk_runs: list[tuple[int, int, int]] = []  # offset, length, code

    @property
    def spilled(self) -> bool:
        return self._spill is not None

    def add(self, values: np.ndarray, codes: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.n_records += len(values)
        codes = np.asarray(codes)
        for code in range(self.n_codes):
            part = values if self.n_codes == 1 else values[codes == code]
            start = 0
            while start < len(part):
                if self._buffers[code] is None:
                    # NOTE: buffers fill (and tied ones shrink) well before the codes' buffers reach the budget.
                    size = min(RUN_VALUES, self.max_in_memory // (2 * self.n_codes))
                    self._buffers[code] = _outside_heap(max(1, size))
                buffer, filled = self._buffers[code], self._filled[code]
                assert buffer is not None  # allocated just above
                count = min(len(part) - start, len(buffer) - filled)
                buffer[filled : filled + count] = part[start : start + count]
                self._filled[code] += count
                self._held_bytes += count * _ITEM
                start += count
                if self._filled[code] == len(buffer):
                    self._sort_buffer(code)
        if self._held_bytes > self.max_in_memory * _ITEM or len(self._runs) > MAX_MEMORY_RUNS:
            self._spill_runs()

    def __iter__(self) -> Iterator[Histogram]:
        """Yield histograms (distinct values, counts per code) of ascending, disjoint value ranges.

        Iterate once when `spilled`: the spill file is deleted as the iteration ends.
        """
        for code in range(self.n_codes):
            self._sort_buffer(code)
        runs: list[MemoryRun | DiskRun] = [MemoryRun(run.values, run.counts, run.code) for run in self._runs]
        spill, self._spill = self._spill, None
        if spill is not None:
            runs += [DiskRun(spill, offset, length, code) for offset, length, code in self._disk_runs]
            self._disk_runs = []
        try:
            yield from distinct_steps(runs, self.n_codes, MERGE_VALUES)
        finally:
            if spill is not None:
                spill.close()

    def _sort_buffer(self, code: int) -> None:
        if not self._filled[code]:
            return
        buffer = self._buffers[code]
        assert buffer is not None  # a code with filled values has its buffer
        values = buffer[: self._filled[code]]
        self._buffers[code], self._filled[code] = None, 0
        values.sort()
        self._held_bytes -= values.nbytes
        n_distinct = 1 + int(np.count_nonzero(values[1:] != values[:-1]))
        if 2 * n_distinct <= len(values):  # NOTE: (value, count) pairs take less room than the values
            run = MemoryRun(*run_lengths(values), code)
        else:
            run = MemoryRun(values, None, code)
        self._runs.append(run)
        self._held_bytes += run.nbytes

    def _spill_runs(self) -> None:
        """Merge the runs held in memory into one weighted run per code in the spill file."""
        for code in range(self.n_codes):
            self._sort_buffer(code)
        if self._spill is None:
            self._spill = SpillFile(self._directory)
            logger.debug("Spilling sorted values to %s", self._spill.paths[0])
        for code in range(self.n_codes):
            runs = [MemoryRun(run.values, run.counts, 0) for run in self._runs if run.code == code]
            if runs:
                start = self._spill.size
                for values, counts in distinct_steps(runs, 1, MERGE_VALUES):
                    self._spill.append(values, counts[:, 0])
                self._disk_runs.append((start, self._spill.size - start, code))
        self._runs, self._held_bytes = [], 0


def _outside_heap(n_values: int) -> np.ndarray:
    """Allocate a float64 buffer in its own anonymous mapping, returned to the OS when freed.

    NOTE: from malloc, these long-lived buffers ended up in the heap between short-lived
    temporaries, and freeing them left tens of MiB resident but unused (heap fragmentation).
    """
    return np.frombuffer(mmap.mmap(-1, n_values * _ITEM), dtype=np.float64)
