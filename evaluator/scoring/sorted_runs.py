"""Sorted runs of float64 values, in memory or on disk, and a k-way merge over them.

An external sort needs both: runs that were each sorted in memory, and a merge that reads them
back a block at a time. A run is either plain (sorted values, repeats allowed) or weighted
(strictly increasing values with a count each), so heavily tied data stays small. The merge is
vectorized: each step takes, from every run, the values up to the smallest last value among the
runs' current blocks, so a step consumes at least one whole block and the Python overhead is per
block, not per value.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

_VALUE = np.dtype(np.float64).itemsize
_COUNT = np.dtype(np.int64).itemsize

Histogram = tuple[np.ndarray, np.ndarray]  # sorted distinct values, counts of shape (n_values, n_codes)
Piece = tuple[int, np.ndarray, "np.ndarray | None"]  # code, sorted values, counts (None: one per value)


class MemoryRun:
    """A sorted run held in memory; its blocks are views, not copies."""

    def __init__(self, values: np.ndarray, counts: np.ndarray | None, code: int) -> None:
        self.values, self.counts, self.code = values, counts, code
        self.length, self.position = len(values), 0

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + (self.counts.nbytes if self.counts is not None else 0)

    def window(self, block: int) -> tuple[np.ndarray, np.ndarray | None]:
        end = self.position + block
        return self.values[self.position : end], None if self.counts is None else self.counts[self.position : end]

    def advance(self, count: int) -> None:
        self.position += count


class SpillFile:
    """Append-only files of weighted runs (values and counts); a run is an (offset, length)."""

    def __init__(self, directory: Path) -> None:
        name = uuid.uuid4().hex
        self.paths = (directory / f"values-{name}.f64", directory / f"counts-{name}.i64")
        self._writers = [open(path, "wb") for path in self.paths]  # noqa: SIM115 (closed in close())
        self._fds: list[int] = []
        self.size = 0

    def append(self, values: np.ndarray, counts: np.ndarray) -> None:
        self._writers[0].write(np.ascontiguousarray(values, dtype=np.float64).data)
        self._writers[1].write(np.ascontiguousarray(counts, dtype=np.int64).data)
        self.size += len(values)

    def read(self, offset: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._fds:
            for writer in self._writers:
                writer.close()
            self._fds = [os.open(path, os.O_RDONLY) for path in self.paths]
        # NOTE: pread, not a memory map: mapped pages of a large spill file count as resident memory.
        values = np.frombuffer(os.pread(self._fds[0], count * _VALUE, offset * _VALUE), dtype=np.float64)
        counts = np.frombuffer(os.pread(self._fds[1], count * _COUNT, offset * _COUNT), dtype=np.int64)
        return values, counts

    def close(self) -> None:
        """Close and delete the files."""
        for writer in self._writers:
            writer.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        for path in self.paths:
            path.unlink(missing_ok=True)


class DiskRun:
    """A weighted run in a spill file, read a block at a time."""

    def __init__(self, spill: SpillFile, offset: int, length: int, code: int) -> None:
        self.spill, self.offset, self.length, self.code = spill, offset, length, code
        self.position = 0
        self._cache: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, dtype=np.int64))
        self._cache_start = 0

    def window(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        end = min(self.position + block, self.length)
        if end > self._cache_start + len(self._cache[0]):
            self._cache = self.spill.read(self.offset + self.position, end - self.position)
            self._cache_start = self.position
        start, stop = self.position - self._cache_start, end - self._cache_start
        return self._cache[0][start:stop], self._cache[1][start:stop]

    def advance(self, count: int) -> None:
        self.position += count


Run = MemoryRun | DiskRun


def merge_steps(runs: Sequence[Run], memory_values: int) -> Iterator[list[Piece]]:
    """Yield, step by step, the pieces taken from each run, in ascending value order.

    Every value of a step is >= every value of the steps before it; the previous step's last
    value may recur (a tie can straddle blocks), which `distinct_steps` merges. About
    `memory_values` values (one block per run) are in hand at a time.
    """
    block = max(64, memory_values // max(1, len(runs)))
    live = [run for run in runs if run.length]
    while live:
        windows = [run.window(block) for run in live]
        bounded = [w[0][-1] for run, w in zip(live, windows) if run.position + len(w[0]) < run.length]
        cut = min(bounded) if bounded else None  # NOTE: None: every run's remaining values are in hand
        step = []
        for run, (values, counts) in zip(live, windows):
            count = len(values) if cut is None else int(np.searchsorted(values, cut, side="right"))
            if count:
                step.append((run.code, values[:count], None if counts is None else counts[:count]))
                run.advance(count)
        yield step
        live = [run for run in live if run.position < run.length]


def run_lengths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct values of a sorted array and how often each occurs."""
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    return values[starts], np.diff(np.append(starts, len(values)))


def step_histogram(step: list[Piece], n_codes: int) -> Histogram:
    """Count one merge step: sorted distinct values and counts of shape (n_values, n_codes)."""
    counted = [(code, *((values, counts) if counts is not None else run_lengths(values)))
               for code, values, counts in step]
    if len(counted) == 1:
        code, distinct, counts = counted[0]
        table = np.zeros((len(distinct), n_codes), dtype=np.int64)
        table[:, code] = counts
        return distinct, table
    merged = np.concatenate([values for _, values, _ in counted])
    merged.sort()
    distinct = run_lengths(merged)[0]
    table = np.zeros((len(distinct), n_codes), dtype=np.int64)
    for code, present, counts in counted:  # NOTE: `present` is strictly increasing, so indices do not repeat
        table[np.searchsorted(distinct, present), code] += counts
    return distinct, table


def distinct_steps(runs: Sequence[Run], n_codes: int, memory_values: int) -> Iterator[Histogram]:
    """Merge runs into histograms of ascending value ranges that never share a value."""
    carry: Histogram | None = None
    for step in merge_steps(runs, memory_values):
        values, counts = step_histogram(step, n_codes)
        if len(values) == 0:
            continue
        if carry is not None:
            if values[0] == carry[0][0]:
                counts[0] += carry[1][0]
            else:
                yield carry
        carry = (values[-1:], counts[-1:])
        if len(values) > 1:
            yield values[:-1], counts[:-1]
    if carry is not None:
        yield carry
