"""score_files: stream a labels file and a predictions file, align them, and assemble metrics.json."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evaluator.errors import EvaluatorError
from evaluator.plots import stats as plot_stats
from evaluator.scoring import bootstrap, classification, regression
from evaluator.scoring.alignment import (
    AlignedChunk,
    AlignmentReport,
    _NotSameOrder,
    partitioned_chunks,
    same_order_chunks,
)
from evaluator.scoring.document import (
    SCHEMA_VERSION,
    default_primary_metric,
    direction,
    implementation,
    validate_metrics_document,
)
from evaluator.scoring.sources import LabelsSource, PredictionsSource

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 1 << 16
# Bytes the exact order statistics (ROC AUC scores, absolute errors) may hold in memory; past it they
# spill sorted runs to disk. Peak memory is about this plus the streaming buffers, whatever the rows.
MEMORY_BUDGET_BYTES = 64 << 20
TASK_METRICS = {"classification": classification.METRICS, "regression": regression.METRICS}


def score_files(
    task: str,
    labels_path: Path,
    predictions_path: Path,
    *,
    row_id_column: str = "row_id",
    target_column: str = "target",
    metrics: list[str] | None = None,
    primary_metric: str | None = None,
    bootstrap_seed: int = 0,
    bootstrap_rounds: int = 1000,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    expected_rows: int | None = None,
    plot_data: dict | None = None,
) -> dict:
    """Score predictions against labels and return the validated metrics.json document.

    The predictions are untrusted: their footer is checked before they are decoded; they must
    have `expected_rows` rows (default: the labels' count when a Parquet footer states it).
    `plot_data`, when given, receives the bounded summaries the run's plots are drawn from
    (evaluator.plots.stats; JSON).

    Raises:
        PredictionsInvalid: the predictions do not align one to one with the labels, or hold
            nulls, non-finite values or labels of the wrong type.
        ValueError: an unknown task or metric (a benchmark configuration error).
    """
    wanted, primary = check_task_metrics(task, metrics, primary_metric)
    labels = LabelsSource(Path(labels_path), row_id_column, target_column, chunk_rows)
    predictions = PredictionsSource(Path(predictions_path), chunk_rows, with_proba=task == "classification",
                                    expected_rows=expected_rows if expected_rows is not None else labels.exact_rows())
    numeric = task == "regression"
    with tempfile.TemporaryDirectory(prefix="evaluator-scoring-") as tmp:
        directory = Path(tmp)
        try:
            report = AlignmentReport()
            state = _consume(same_order_chunks(labels, predictions, numeric=numeric, report=report),
                             task, predictions, directory, primary, report)
        except _NotSameOrder as ex:
            logger.debug("Predictions are not in the labels' order (%s); partitioning on row_id", ex)
            state = None
        # NOTE: partition outside the except block: its traceback keeps the abandoned readers (and their
        # read-ahead buffers, ~250 MiB for a CSV) alive.
        if state is None:
            _empty(directory)
            report = AlignmentReport()
            chunks = partitioned_chunks(labels, predictions, directory, numeric=numeric, report=report,
                                        chunk_rows=chunk_rows)
            state = _consume(chunks, task, predictions, directory, primary, report)
        result = state["accumulator"].result()
    doc = _document(task, result, state, wanted, primary, bootstrap_rounds, bootstrap_seed)
    validate_metrics_document(doc)
    if plot_data is not None:
        plot_data.update(_plot_summary(task, state, result))
    return doc


def _plot_summary(task: str, state: dict, result: dict) -> dict:
    if task == "regression":
        return plot_stats.regression_data(state["plots"], state["n"])
    proba = state["accumulator"].proba
    histograms = proba.plot_stats.for_classes(result["classes"]) if proba is not None else {}
    return plot_stats.classification_data(result["classes"], histograms, result["confusion_matrix"], state["n"])


def check_task_metrics(task: str, metrics: list[str] | None, primary_metric: str | None) -> tuple[list[str], str]:
    """Return the metrics to compute and the primary one; ValueError for an unknown task or metric."""
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_METRICS)}")
    primary = primary_metric or default_primary_metric(task)
    wanted = list(metrics) if metrics else list(TASK_METRICS[task])
    unknown = [m for m in [*wanted, primary] if m not in TASK_METRICS[task]]
    if unknown:
        raise ValueError(f"unknown {task} metrics: {', '.join(unknown)}")
    return wanted, primary


def _consume(chunks: Iterator[AlignedChunk], task: str, predictions: PredictionsSource, directory: Path,
             primary: str, report: AlignmentReport) -> dict:
    accumulator = None
    clusters = bootstrap.ClusterStatistics() if primary in bootstrap.CLUSTER_METRICS else None
    plots = plot_stats.RegressionStats() if task == "regression" else None
    for chunk in chunks:
        if not report.ok:
            continue  # NOTE: keep reading to count every problem; the result is discarded
        if accumulator is None:
            accumulator = (classification.ClassificationAccumulator(chunk.target.type, predictions.proba_columns(),
                                                                    directory, MEMORY_BUDGET_BYTES)
                           if task == "classification"
                           else regression.RegressionAccumulator(directory, MEMORY_BUDGET_BYTES))
        losses = accumulator.add(chunk)
        if plots is not None:
            plots.add(chunk.target.to_numpy(zero_copy_only=False).astype(np.float64),
                      chunk.prediction.to_numpy(zero_copy_only=False).astype(np.float64))
        if clusters is not None:
            if task == "regression":
                y = chunk.target.to_numpy(zero_copy_only=False).astype(np.float64)
                e = y - chunk.prediction.to_numpy(zero_copy_only=False).astype(np.float64)
                clusters.add(chunk.row_ids, {"y": y, "e": e})
            elif losses is not None:
                clusters.add(chunk.row_ids, {"loss": losses})
    report.raise_if_invalid()
    if accumulator is None:
        raise EvaluatorError("labels file has no rows")
    return {"accumulator": accumulator, "clusters": clusters, "n": report.n_label_rows, "plots": plots}


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _document(task: str, result: dict, state: dict, wanted: list[str], primary: str, rounds: int,
              seed: int) -> dict:
    values = result["metrics"]
    skipped = {name: reason for name, reason in result["skipped"].items() if name in wanted or name == primary}
    doc = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "n_rows": state["n"],
        "metrics": {name: values[name] for name in wanted if name in values},
        "primary_metric": {
            "name": primary,
            "value": values.get(primary),
            "direction": direction(primary),
            "ci": _interval(primary, values, result, state, rounds, seed),
        },
        "skipped": skipped,
        "warnings": result["warnings"],
        "implementation": implementation(),
    }
    if task == "classification":
        doc["classes"] = result["classes"]
        doc["per_class"] = result["per_class"]
        doc["confusion_matrix"] = result["confusion_matrix"]
    return doc


def _interval(primary: str, values: dict, result: dict, state: dict, rounds: int, seed: int) -> dict:
    if primary not in values:
        return bootstrap.unavailable(rounds, seed, f"{primary} is undefined: {result['skipped'].get(primary)}")
    if rounds <= 0:
        return bootstrap.unavailable(0, seed, "bootstrap_rounds is 0")
    if primary in classification.COUNT_METRICS:
        return bootstrap.confusion_bootstrap(result["counts"], primary, rounds=rounds, seed=seed)
    if state["clusters"] is not None:
        return state["clusters"].bootstrap(primary, rounds=rounds, seed=seed)
    return bootstrap.unavailable(rounds, seed, f"{primary} is an order statistic; resampling it needs every "
                                 "row in memory, so no interval is computed")
