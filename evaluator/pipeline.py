"""evaluate_run(run_id): claim the run, stage from S3, evaluate in the sandbox, publish the results.

Called by the Dramatiq actor with its collaborators. Participant failures end
the run with a code; infrastructure errors give the run back to the queue and
propagate, so the actor's retries apply.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Protocol

from evaluator import competition, run_folders, runs, submissions
from evaluator.config import Config
from evaluator.errors import InfrastructureError
from evaluator.evaluation import Sandbox, evaluate_bundle
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import TERMINAL_RUN_STATUSES, Benchmark, Dataset, Run, RunStatus, Submission

logger = logging.getLogger(__name__)

RENEW_EVERY_S = 5.0


class RunSandbox(Sandbox, Protocol):
    """What a worker needs of its sandbox: evaluate_bundle's run(), and removing a dead attempt's container."""

    def remove_leftovers(self, run_id: str | None = None) -> int: ...


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def evaluate_run(run_id: str, *, blobs: BlobStore, sandbox: RunSandbox, config: Config,
                 worker: str | None = None) -> str:
    """Evaluate one run to a final state; a redelivery of a finished or claimed run does nothing.

    Returns the run's status after this call.
    """
    worker = worker or worker_name()
    run = Run.get_or_none(Run.id == run_id)
    if run is None:
        logger.info("Run %s does not exist; dropping the message.", run_id)
        return "missing"
    if run.status in {s.value for s in TERMINAL_RUN_STATUSES}:
        logger.info("Run %s is already %s; ignoring redelivery.", run_id, run.status)
        return run.status
    if not runs.claim(run_id, worker):
        logger.info("Run %s is %s and leased by another worker; ignoring this message.", run_id, run.status)
        return Run.get_by_id(run_id).status
    run = Run.get_by_id(run_id)
    if run.attempts > 1:
        # Taken over from a worker that died: its container may still be there, running or exited.
        sandbox.remove_leftovers(run_id)
    try:
        return _evaluate_claimed(run, blobs=blobs, sandbox=sandbox, config=config, worker=worker)
    except Exception:
        # Infrastructure (S3, DB, Docker) or a bug: hand the run back so a retry can claim it at once.
        runs.release(run_id, worker)
        raise


def _evaluate_claimed(run: Run, *, blobs: BlobStore, sandbox: RunSandbox, config: Config, worker: str) -> str:
    run_id = str(run.id)
    submission = Submission.get_by_id(run.submission_id)
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    dataset = Dataset.get_by_id(benchmark.dataset_id)
    run_dir = run_folders.prepare(config, run_id)
    stage_started = time.monotonic()
    try:
        limit = int(benchmark.limits.get("max_bundle_bytes") or config.max_bundle_bytes)
        bundle_path = run_dir / f"bundle{layout.bundle_extension(submission.object_key) or ''}"
        try:
            # NOTE: the object its upload event named (ETag pinned), never one that replaced it later
            sha256 = submissions.fetch_bundle(submission, bundle_path, limit, blobs=blobs)
        except ValueError as ex:
            return _finish_failed(run_id, "bundle_invalid", str(ex))
        if dataset.status == "invalid":
            return _finish_failed(run_id, "internal", f"the benchmark's dataset {dataset.ref} is invalid: "
                                                      f"{dataset.reason}; the organiser must publish a valid one")
        features, labels = stage_dataset(dataset, blobs=blobs, config=config)
        download_s = time.monotonic() - stage_started

        watcher = _Watcher(run_id, worker)
        evaluation = evaluate_bundle(
            bundle_path, features, labels, task=benchmark.task, sandbox=sandbox,
            config=_with_limits(config, benchmark.limits), work_dir=run_dir / "work", run_id=run_id,
            row_id_column=dataset.row_id_column, target_column=dataset.target_column,
            metrics=benchmark.metrics or None, primary_metric=benchmark.primary_metric,
            should_cancel=watcher.should_cancel, allowed_frameworks=benchmark.allowed_frameworks or None,
            private_split=competition.private_split(benchmark),
            known_sha256={"bundle": sha256, "features": dataset.features_sha256, "labels": dataset.labels_sha256},
            on_stage=lambda stage: runs.advance(run_id, worker, stage),
        )
        prefix = layout.results_prefix(benchmark.id, run_id)
        provenance = {**evaluation.provenance, "dataset": dataset.ref, "worker": worker, "attempt": run.attempts}
        provenance.setdefault("durations_s", {})["download"] = round(download_s, 3)
        record = evaluation.to_record()
        publish(blobs, config.results_bucket, prefix, record=record, provenance=provenance,
                predictions=evaluation.predictions, log=evaluation.log)
        finished = runs.finish(run_id, status=evaluation.status, metrics=evaluation.metrics,
                               private_metrics=evaluation.private_metrics,
                               failure=evaluation.failure, provenance=provenance, results_prefix=prefix)
        final = Run.get_by_id(run_id).status
        logger.info("Run %s ended %s%s.", run_id, final, "" if finished else " (set elsewhere first)")
        return final
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _finish_failed(run_id: str, code: str, message: str) -> str:
    runs.finish(run_id, status=RunStatus.FAILED.value, failure={"code": code, "message": message})
    return Run.get_by_id(run_id).status


def _with_limits(config: Config, limits: dict) -> Config:
    return config.replace(
        sandbox_timeout_s=int(limits.get("timeout_s", config.sandbox_timeout_s)),
        sandbox_memory=str(limits.get("memory", config.sandbox_memory)),
        sandbox_cpus=float(limits.get("cpus", config.sandbox_cpus)),
        sandbox_pids=int(limits.get("pids", config.sandbox_pids)),
    )


class _Watcher:
    """Polled by the sandbox while the model runs: renews our lease and reports a cancel."""

    def __init__(self, run_id: str, worker: str) -> None:
        self._run_id, self._worker = run_id, worker
        self._next = 0.0
        self._cancelled = False

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now >= self._next:
            self._next = now + RENEW_EVERY_S
            status = runs.renew_lease(self._run_id, self._worker)
            self._cancelled = status in (None, RunStatus.CANCELLED.value)
        return self._cancelled


def stage_dataset(dataset: Dataset, *, blobs: BlobStore, config: Config) -> tuple[Path, Path]:
    """Download a dataset's files once per worker host (content-addressed by their sha256).

    The cache lives outside every run folder: nothing here is ever mounted into a sandbox.
    """
    if dataset.status != "ready":  # still registering: retried, and the reconciler re-queues it later
        raise InfrastructureError(f"dataset {dataset.ref} is {dataset.status}, not ready")
    folder = Path(config.work_dir) / "datasets" / f"{dataset.id}-{(dataset.labels_sha256 or '')[:12]}"
    paths = (folder / f"features.{dataset.file_format}", folder / f"labels.{dataset.file_format}")
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for key, path in zip((dataset.features_key, dataset.labels_key), paths):
        partial = path.with_suffix(f".part-{os.getpid()}")
        blobs.download(config.datasets_bucket, key, partial)
        os.replace(partial, path)
    return paths


def publish(blobs: BlobStore, bucket: str, prefix: str, *, record: dict, provenance: dict,
            predictions: bytes | None, log: bytes) -> None:
    """Write metrics.json (always: a failed run records its failure too), predictions and the log."""
    document = {**record, "provenance": provenance}
    blobs.put_json(bucket, prefix + "metrics.json", document)
    if predictions is not None:
        blobs.put_bytes(bucket, prefix + "predictions.parquet", predictions)
    blobs.put_bytes(bucket, prefix + "sandbox.log", log or b"", "text/plain; charset=utf-8")
