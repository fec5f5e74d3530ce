"""Re-score stored predictions after a benchmark's metrics or labels change: no model runs again.

The run's previous documents are kept (Run.metrics_history and metrics.<n>.json
beside the new metrics.json), so old and new results can be compared.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from evaluator import phases
from evaluator.config import Config
from evaluator.dataset_cache import stage_dataset
from evaluator.isolated_scoring import score_isolated
from evaluator.plots.build import publish_plots
from evaluator.settings import Scoring
from evaluator.storage import board_values
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Benchmark, Run, RunStatus, isoformat, utcnow

logger = logging.getLogger(__name__)


def runs_to_rescore(benchmark: Benchmark) -> list[str]:
    query = Run.select(Run.id).where((Run.benchmark == benchmark.id) & (Run.status == RunStatus.SUCCEEDED.value)
                                     & Run.results_prefix.is_null(False))
    return [str(run.id) for run in query]


def rescore_run(run_id: str, *, blobs: BlobStore, config: Config) -> dict:
    """Score a run's stored predictions with its benchmark's current metrics and labels."""
    run = Run.get_by_id(run_id)
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    phase = phases.phase_of_run(run)  # a phase's run is re-scored on that phase's labels and metrics
    dataset = phases.dataset_of(benchmark, phase)
    _, labels = stage_dataset(dataset, blobs=blobs, config=config)
    bucket, prefix = config.results_bucket, run.results_prefix
    assert prefix is not None  # only runs that stored results are re-scored
    with tempfile.TemporaryDirectory(prefix=f"rescore-{run_id}-", dir=_work_dir(config)) as tmp:
        predictions = Path(tmp) / "predictions.parquet"
        blobs.download(bucket, prefix + "predictions.parquet", predictions)
        plot_data: dict = {}
        document, private = score_isolated(Scoring.of(phases.effective(benchmark, phase), dataset), labels, predictions,
                                           work_dir=Path(tmp) / "scoring", config=config,
                                           expected_rows=dataset.row_count, plot_data=plot_data)
    history = [*run.metrics_history, {"metrics": run.metrics, "private_metrics": run.private_metrics,
                                      "replaced_at": isoformat(utcnow()), "dataset": dataset.ref}]
    old = blobs.get_bytes(bucket, prefix + "metrics.json") if blobs.head(bucket, prefix + "metrics.json") else None
    if old is not None:  # keep the old file beside the new one
        blobs.put_bytes(bucket, f"{prefix}metrics.{len(history)}.json", old, "application/json")
    record = {**json.loads(old), "metrics": document, "private_metrics": private,
              "rescored_at": isoformat(utcnow())} if old is not None else {"metrics": document}
    blobs.put_json(bucket, prefix + "metrics.json", record)
    publish_plots(blobs, bucket, prefix, plot_data, min_bin_rows_floor=config.plot_min_bin_rows)  # drawn anew
    Run.update(metrics=document, private_metrics=private, board_values=board_values.of(document, private),
               metrics_history=history,
               updated_at=utcnow()).where(Run.id == run.id).execute()  # updated_at: the board cache's stamp
    logger.info("Re-scored run %s on %s (%d earlier results kept)", run_id, dataset.ref, len(history))
    return document


def _work_dir(config: Config) -> str:
    path = Path(config.work_dir)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
