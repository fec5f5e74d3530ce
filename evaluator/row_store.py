"""Per-row predictions of stored runs, aligned to the benchmark's labels, for paired tests and the Ladder.

A run's predictions are the file the pipeline stored at results/<b>/<run>/predictions.parquet (read through
the same checked reader as scoring); the labels come from the dataset cache of the worker (stage_dataset).
Both are sorted by row id and cut to one part of the labels: "public" or "private" when the benchmark splits
them (the same stable hash as scoring, competition.is_private_row), else "all".

Reads are cached in this process, bounded by rows held (CACHE_ROWS): a board's top pairs and a participant's
Ladder read the same few runs again and again. Comparisons are cached by everything they depend on (both
runs' results, the labels' hash, the part and the metric); with a fixed seed they are deterministic.
"""

from __future__ import annotations

import collections
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaluator import significance
from evaluator.competition import is_private_row
from evaluator.config import Config
from evaluator.dataset_cache import stage_dataset
from evaluator.errors import Conflict, EvaluatorError, ObjectMissing, PayloadTooLarge
from evaluator.scoring.sources import PROBA_PREFIX, LabelsSource, PredictionsSource
from evaluator.settings import CompetitionSettings
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import rows as db_rows
from evaluator.storage.models import Dataset, LadderStep, Run

MAX_ROWS = 2_000_000  # rows of one labels file a comparison loads (beyond: refused, the board shows no test)
CACHE_ROWS = 4_000_000  # rows of runs kept in memory across requests (~25 bytes a row)
CACHE_COMPARISONS = 4096
_BATCH_ROWS = 1 << 16


class Scope(Protocol):
    """What the rows depend on of a benchmark: a Benchmark row, or phases.Effective for one of its phases."""

    @property
    def id(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def dataset_id(self) -> Any: ...

    @property
    def settings(self) -> Any: ...


class _Labels:
    def __init__(self, table: pa.Table, classes: pa.Array | None, masks: dict[str, np.ndarray]) -> None:
        self.table, self.classes, self.masks = table, classes, masks


def part_of(benchmark: Scope, private: bool) -> str:
    """The part of the labels a board view ranks on."""
    if not CompetitionSettings.from_json(benchmark.settings).private_fraction:
        return "all"
    return "private" if private else "public"


class RowStore:
    """Loads and caches runs' aligned rows; thread-safe (the API serves requests on threads)."""

    def __init__(self, blobs: BlobStore, config: Config) -> None:
        self._blobs, self._config = blobs, config
        self._lock = threading.Lock()
        self._labels: collections.OrderedDict = collections.OrderedDict()
        self._rows: collections.OrderedDict = collections.OrderedDict()
        self._held = 0
        self._comparisons: collections.OrderedDict = collections.OrderedDict()

    def compare(self, benchmark: Scope, a: Run, b: Run, metric: str, part: str) -> significance.Comparison:
        """The paired test of two runs of a benchmark on one part of its labels (cached)."""
        dataset = Dataset.get_by_id(benchmark.dataset_id)
        key = (str(a.id), a.results_prefix, str(b.id), b.results_prefix, metric, part, str(dataset.id),
               dataset.labels_sha256)
        with self._lock:
            if key in self._comparisons:
                self._comparisons.move_to_end(key)
                return self._comparisons[key]
        result = significance.compare(metric, self.rows(benchmark, a, part), self.rows(benchmark, b, part))
        with self._lock:
            self._comparisons[key] = result
            while len(self._comparisons) > CACHE_COMPARISONS:
                self._comparisons.popitem(last=False)
        return result

    def known_steps(self, benchmark: Scope, metric: str, part: str) -> dict[tuple[str, str], float | None]:
        """Every Ladder step stored for this benchmark, metric, part and labels: {(run, best run): threshold}."""
        labels = _labels_key(Dataset.get_by_id(benchmark.dataset_id))
        query = (LadderStep.select(LadderStep.run_id, LadderStep.best_run_id, LadderStep.threshold)
                 .where((LadderStep.benchmark == benchmark.id) & (LadderStep.metric == metric)
                        & (LadderStep.part == part) & (LadderStep.labels == labels)).tuples())
        return {(str(run), str(best)): threshold for run, best, threshold in db_rows(query)}

    def step(self, benchmark: Scope, a: Run, b: Run, metric: str, part: str) -> float | None:
        """The Ladder's threshold between two runs (significance.standard_error), computed once and stored.

        NOTE: a stored step is derived data (ladder_step): the same runs and labels give the same value.
        """
        labels = _labels_key(Dataset.get_by_id(benchmark.dataset_id))
        result = significance.standard_error(metric, self.rows(benchmark, a, part), self.rows(benchmark, b, part))
        (LadderStep.insert(benchmark=benchmark.id, run_id=a.id, best_run_id=b.id, metric=metric, part=part,
                           labels=labels, threshold=result)
         .on_conflict_ignore().execute())
        return result

    def part_rows(self, benchmark: Scope, part: str) -> int:
        """How many rows of the labels `part` holds (the Ladder's n)."""
        labels = self._labels_of(benchmark, Dataset.get_by_id(benchmark.dataset_id))
        return int(labels.masks[part].sum())

    def rows(self, benchmark: Scope, run: Run, part: str) -> significance.Rows:
        """One run's rows of `part`, aligned to the labels (Conflict when it has no stored predictions)."""
        if not run.results_prefix:
            raise Conflict(f"run {run.id} has no stored predictions to compare")
        dataset = Dataset.get_by_id(benchmark.dataset_id)
        key = (str(run.id), run.results_prefix, str(dataset.id), dataset.labels_sha256, part)
        with self._lock:
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        labels = self._labels_of(benchmark, dataset)
        rows = self._load(benchmark, dataset, labels, run, part)
        with self._lock:
            self._rows[key] = rows
            self._held += rows.n
            while self._held > CACHE_ROWS and len(self._rows) > 1:
                _, dropped = self._rows.popitem(last=False)
                self._held -= dropped.n
        return rows

    def _labels_of(self, benchmark: Scope, dataset: Dataset) -> _Labels:
        fraction = CompetitionSettings.from_json(benchmark.settings).private_fraction
        key = (str(dataset.id), dataset.labels_sha256, benchmark.id, fraction, benchmark.task)
        with self._lock:
            if key in self._labels:
                return self._labels[key]
        if dataset.row_count is not None and dataset.row_count > MAX_ROWS:
            raise PayloadTooLarge(f"dataset {dataset.ref} has {dataset.row_count} rows; paired tests load at most "
                                  f"{MAX_ROWS}")
        _, path = stage_dataset(dataset, blobs=self._blobs, config=self._config)
        source = LabelsSource(path, dataset.row_id_column, dataset.target_column, _BATCH_ROWS)
        table = pa.Table.from_batches(list(source.batches())).combine_chunks().sort_by("row_id")
        ids = table.column("row_id").to_pylist()
        private = (np.array([is_private_row(i, benchmark.id, fraction) for i in ids], dtype=bool)
                   if fraction else np.zeros(len(ids), dtype=bool))
        masks = {"all": np.ones(len(ids), dtype=bool), "public": ~private, "private": private}
        classes = None
        if benchmark.task == "classification":
            classes = pc.unique(table.column("target").combine_chunks()).drop_null().sort()
        labels = _Labels(table, classes, masks)
        with self._lock:
            self._labels[key] = labels
            while len(self._labels) > 4:
                self._labels.popitem(last=False)
        return labels

    def _load(self, benchmark: Scope, dataset: Dataset, labels: _Labels, run: Run,
              part: str) -> significance.Rows:
        task = benchmark.task
        with tempfile.TemporaryDirectory(prefix=f"rows-{run.id}-") as tmp:
            path = Path(tmp) / "predictions.parquet"
            try:
                self._blobs.download(self._config.results_bucket, f"{run.results_prefix}predictions.parquet", path)
            except ObjectMissing:
                raise Conflict(f"run {run.id}'s predictions are gone from the store") from None
            source = PredictionsSource(path, _BATCH_ROWS, with_proba=task == "classification",
                                       expected_rows=labels.table.num_rows)
            predictions = pa.Table.from_batches(list(source.batches()), schema=None).combine_chunks()
        expected = labels.table.column("row_id")
        if predictions.column("row_id").type != expected.type:
            try:
                predictions = predictions.set_column(0, "row_id", pc.cast(predictions.column("row_id"), expected.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise Conflict(f"run {run.id}'s row ids do not match the labels' any more") from None
        predictions = predictions.sort_by("row_id")
        if not predictions.column("row_id").equals(expected):
            raise Conflict(f"run {run.id}'s predictions do not align with the current labels (re-score it)")
        mask = labels.masks[part]
        selected = pa.array(mask)
        row_ids = expected.filter(selected).combine_chunks()
        if task != "classification":
            return significance.Rows(row_ids, task, _floats(labels.table.column("target"))[mask],
                                     _floats(predictions.column("prediction"))[mask])
        return self._classification(labels, predictions, mask, row_ids)

    @staticmethod
    def _classification(labels: _Labels, predictions: pa.Table, mask: np.ndarray,
                        row_ids: pa.Array) -> significance.Rows:
        classes = labels.classes
        assert classes is not None
        k = len(classes)
        true = pc.index_in(labels.table.column("target"), value_set=classes).to_numpy(zero_copy_only=False)
        predicted_values = predictions.column("prediction")
        try:
            same = (predicted_values if predicted_values.type == classes.type
                    else pc.cast(predicted_values, classes.type))
            found = pc.index_in(same, value_set=classes)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # NOTE: "1.5" vs 1: compare as text
            found = pc.index_in(pc.cast(predicted_values, pa.string()), value_set=pc.cast(classes, pa.string()))
        codes = found.to_numpy(zero_copy_only=False)
        outside = np.isnan(codes.astype(float))
        predicted = np.where(outside, k, np.nan_to_num(codes.astype(float), nan=k)).astype(np.int64)
        outside_values = predicted_values.filter(pa.array(outside))
        n_other = len(pc.unique(outside_values)) if len(outside_values) else 0
        names = [f"{PROBA_PREFIX}{value}" for value in classes.to_pylist()]
        p_true = None
        true_codes = np.nan_to_num(true.astype(float), nan=0).astype(np.int64)
        if names and all(name in predictions.column_names for name in names):
            matrix = np.column_stack([_floats(predictions.column(name)) for name in names])
            p_true = np.clip(matrix[np.arange(len(true_codes)), true_codes], 0.0, 1.0)[mask]
        return significance.Rows(row_ids, "classification", true_codes[mask], predicted[mask], k, n_other, p_true)


def _labels_key(dataset: Dataset) -> str:
    return f"{dataset.id}:{dataset.labels_sha256}"


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    try:
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as ex:
        raise EvaluatorError(f"a column could not be read as numbers: {ex}") from ex


_SHARED: dict[tuple[int, str], RowStore] = {}
_SHARED_LOCK = threading.Lock()


def shared(blobs: BlobStore, config: Config) -> RowStore:
    """The process's RowStore over this store and results bucket (the API and the pages share its caches)."""
    key = (id(blobs), config.results_bucket)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = RowStore(blobs, config)
        return _SHARED[key]
