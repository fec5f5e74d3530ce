"""The public/private split of a benchmark's hidden labels, applied when scoring a run.

Rows are assigned by a stable hash of (benchmark, row id), so every run of a
benchmark is scored on the same two parts without storing a second label file.
NOTE: the split reads the label and prediction tables into memory; very large
test sets should be scored without a split.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evaluator.competition import is_private_row
from evaluator.datasets import read_table
from evaluator.scoring import score_files


def split_for_scoring(labels: Path, predictions: Path, *, row_id_column: str, benchmark_id: str, fraction: float,
                      out_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Write {public, private} pairs of (labels, predictions) Parquet files; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"labels": read_table(labels), "predictions": pq.read_table(predictions)}
    id_columns = {"labels": row_id_column, "predictions": "row_id"}
    paths: dict[str, list[Path]] = {"public": [], "private": []}
    for name, table in tables.items():
        ids = table.column(id_columns[name]).to_pylist()
        private = pa.array([is_private_row(i, benchmark_id, fraction) for i in ids], type=pa.bool_())
        for part, mask in (("private", private), ("public", pc.invert(private))):
            path = out_dir / f"{part}-{name}.parquet"
            pq.write_table(table.filter(mask), path)
            paths[part].append(path)
    return {part: (pair[0], pair[1]) for part, pair in paths.items()}


def score_parts(task: str, labels: Path, predictions: Path, *, row_id_column: str, target_column: str,
                metrics: list[str] | None, primary_metric: str | None, private_split: tuple[str, float] | None,
                work_dir: Path) -> tuple[dict, dict | None]:
    """Score predictions: (document, None) without a split, (public, private) documents with one."""
    score = functools.partial(score_files, task, row_id_column=row_id_column, target_column=target_column,
                              metrics=metrics, primary_metric=primary_metric)
    if private_split is None:
        return score(labels, predictions), None
    parts = split_for_scoring(labels, predictions, row_id_column=row_id_column, benchmark_id=private_split[0],
                              fraction=private_split[1], out_dir=work_dir / "split")
    return score(*parts["public"]), score(*parts["private"])
