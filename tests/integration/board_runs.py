"""Scored runs for leaderboard tests: real scoring of a predictions table, stored where the pipeline stores it."""

from __future__ import annotations

import datetime
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaluator.settings import Scoring
from evaluator.splits import score_parts
from evaluator.storage.models import Benchmark, Run, Submission, utcnow
from tests.integration.helpers import parquet_bytes


def binary_dataset(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """(features, labels) of n rows with random 0/1 labels keyed by row_id."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:06d}" for i in range(n)]
    return (pa.table({"row_id": ids, "x": rng.normal(size=n)}),
            pa.table({"row_id": ids, "target": rng.integers(0, 2, n)}))


def scored_run(benchmark_id: str, owner: str, labels: pa.Table, predicted: np.ndarray, *, blobs, config,
               finished_at: datetime.datetime | None = None, phase: str | None = None) -> Run:
    """Score `predicted` against `labels` (public and private parts when split) and record a succeeded run.

    `phase` (a slug) scores it as a run of that phase: the phase's dataset, task and metrics.
    """
    from evaluator import phases
    from evaluator.storage.models import Phase

    benchmark = Benchmark.get_by_id(benchmark_id)
    row = Phase.get((Phase.benchmark == benchmark_id) & (Phase.slug == phase)) if phase else None
    dataset = phases.dataset_of(benchmark, row)
    scope = phases.effective(benchmark, row)
    predictions = pa.table({"row_id": labels.column("row_id"), "prediction": pa.array(predicted)})
    with tempfile.TemporaryDirectory(prefix="board-run-") as tmp:
        labels_path, predictions_path = Path(tmp) / "labels.parquet", Path(tmp) / "predictions.parquet"
        pq.write_table(labels, labels_path)
        pq.write_table(predictions, predictions_path)
        public, private = score_parts(Scoring.of(scope, dataset), labels_path, predictions_path,
                                      work_dir=Path(tmp) / "work")
    submission = Submission.create(benchmark=benchmark_id, owner=owner, name="m", version=uuid.uuid4().hex[:8],
                                   bucket="b", object_key=f"bundles/{uuid.uuid4()}.tar.gz", status="uploaded",
                                   phase=row)
    run = Run.create(submission=submission, benchmark=benchmark_id, owner=owner, status="succeeded",
                     metrics=public, private_metrics=private, finished_at=finished_at or utcnow(), phase=row)
    prefix = f"results/{benchmark_id}/{run.id}/"
    blobs.put_bytes(config.results_bucket, prefix + "predictions.parquet", parquet_bytes(predictions))
    Run.update(results_prefix=prefix).where(Run.id == run.id).execute()
    return Run.get_by_id(run.id)
