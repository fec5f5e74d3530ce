"""The public/private split of a benchmark's hidden labels, applied when scoring a run.

Rows are assigned by a stable hash of (benchmark, row id), so every run of a
benchmark is scored on the same two parts without storing a second label file.
Both files are split a batch at a time, the predictions through the same checked
reader as scoring (PredictionsSource): the split holds no more than a batch in memory.
NOTE: the hash is computed per row in Python (about a microsecond a row).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evaluator.competition import is_private_row
from evaluator.scoring import score_files
from evaluator.scoring.sources import LabelsSource, PredictionsSource
from evaluator.settings import Scoring

_BATCH_ROWS = 1 << 16


def split_for_scoring(labels: Path, predictions: Path, *, row_id_column: str, target_column: str = "target",
                      benchmark_id: str, fraction: float, out_dir: Path, task: str = "classification",
                      expected_rows: int | None = None) -> dict[str, tuple[Path, Path]]:
    """Write {public, private} pairs of (labels, predictions) Parquet files; return their paths.

    The label parts name their columns row_id and target.

    Raises:
        PredictionsInvalid: the predictions fail the checks of PredictionsSource.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    label_source = LabelsSource(labels, row_id_column, target_column, _BATCH_ROWS)
    rows = expected_rows if expected_rows is not None else label_source.exact_rows()
    sources = {"labels": label_source.batches(),
               "predictions": PredictionsSource(predictions, _BATCH_ROWS, with_proba=task == "classification",
                                                expected_rows=rows).batches()}
    paths: dict[str, list[Path]] = {"public": [], "private": []}
    for name, batches in sources.items():
        parts = {part: out_dir / f"{part}-{name}.parquet" for part in paths}
        _split(batches, parts, benchmark_id, fraction)
        for part, path in parts.items():
            paths[part].append(path)
    return {part: (pair[0], pair[1]) for part, pair in paths.items()}


def _split(batches: Iterator[pa.RecordBatch], paths: dict[str, Path], benchmark_id: str, fraction: float) -> None:
    writers: dict[str, pq.ParquetWriter] = {}
    schema = None
    try:
        for batch in batches:
            schema = batch.schema
            ids = batch.column("row_id").to_pylist()
            private = pa.array([is_private_row(i, benchmark_id, fraction) for i in ids], type=pa.bool_())
            for part, mask in (("private", private), ("public", pc.invert(private))):
                if part not in writers:
                    writers[part] = pq.ParquetWriter(paths[part], schema)
                writers[part].write_batch(batch.filter(mask))
    finally:
        for writer in writers.values():
            writer.close()
    for part, path in paths.items():
        if part not in writers:  # NOTE: no batch at all: still a valid, empty file
            pq.write_table(pa.table({"row_id": pa.array([], pa.int64())}) if schema is None else schema.empty_table(),
                           path)


def score_parts(scoring: Scoring, labels: Path, predictions: Path, *, work_dir: Path,
                expected_rows: int | None = None, plot_data: dict | None = None) -> tuple[dict, dict | None]:
    """Score predictions: (document, None) without a split, (public, private) documents with one.

    `plot_data`, when given, receives the plots' summaries: {"all": ...}, or {"public": ..., "private": ...}.
    """
    score = functools.partial(score_files, scoring.task, metrics=scoring.metric_list,
                              primary_metric=scoring.primary_metric)

    def part(name: str) -> dict | None:
        return None if plot_data is None else plot_data.setdefault(name, {})

    if scoring.private_split is None:
        return score(labels, predictions, row_id_column=scoring.row_id_column, target_column=scoring.target_column,
                     expected_rows=expected_rows, plot_data=part("all")), None
    salt, fraction = scoring.private_split
    parts = split_for_scoring(labels, predictions, row_id_column=scoring.row_id_column,
                              target_column=scoring.target_column, benchmark_id=salt, fraction=fraction,
                              out_dir=work_dir / "split", task=scoring.task, expected_rows=expected_rows)
    return score(*parts["public"], plot_data=part("public")), score(*parts["private"], plot_data=part("private"))
