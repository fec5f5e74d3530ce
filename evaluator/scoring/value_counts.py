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
        self._pending: list[list[np.ndarray]] = [[] for _ in range(n_codes)]
        self._pending_values = [0] * n_codes
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
        if self.n_codes == 1:
            parts = [values]
        else:
            codes = np.asarray(codes)
            parts = [values[codes == code] for code in range(self.n_codes)]
        run_values = min(RUN_VALUES, self.max_in_memory)
        for code, part in enumerate(parts):
            if len(part):
                # NOTE: a copy, so a view does not keep the caller's whole chunk alive.
                self._pending[code].append(np.array(part, dtype=np.float64))
                self._pending_values[code] += len(part)
                self._held_bytes += part.nbytes
                if self._pending_values[code] >= run_values:
                    self._sort_pending(code)
        if self._held_bytes > self.max_in_memory * _ITEM or len(self._runs) > MAX_MEMORY_RUNS:
            self._spill_runs()

    def __iter__(self) -> Iterator[Histogram]:
        """Yield histograms (distinct values, counts per code) of ascending, disjoint value ranges.

        Iterate once when `spilled`: the spill file is deleted as the iteration ends.
        """
        for code in range(self.n_codes):
            self._sort_pending(code)
        runs = [MemoryRun(run.values, run.counts, run.code) for run in self._runs]
        spill, self._spill = self._spill, None
        if spill is not None:
            runs += [DiskRun(spill, offset, length, code) for offset, length, code in self._disk_runs]
            self._disk_runs = []
        try:
            yield from distinct_steps(runs, self.n_codes, MERGE_VALUES)
        finally:
            if spill is not None:
                spill.close()

    def _sort_pending(self, code: int) -> None:
        pending = self._pending[code]
        if not pending:
            return
        values = np.concatenate(pending) if len(pending) > 1 else pending[0]
        self._pending[code], self._pending_values[code] = [], 0
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
            self._sort_pending(code)
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
