"""evaluate_run(run_id): claim the run, stage from S3, evaluate in the sandbox, publish the results.

Called by the Dramatiq actor with its collaborators. Participant failures end
the run with a code; infrastructure errors give the run back to the queue and
propagate, so the actor's retries apply. A run leased by a live-looking worker
raises runs.LeaseHeld (the actor sends the message again for when the lease
runs out), so a dead worker's run is taken over without the reconciler.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Protocol

from dramatiq.middleware import Shutdown

from evaluator import after_run, phases, run_folders, run_plots, runs, stages, submissions, workers
from evaluator.config import Config
from evaluator.dataset_cache import stage_dataset
from evaluator.errors import RunFailure
from evaluator.evaluation import Sandbox, evaluate_bundle, evaluate_predictions_file
from evaluator.plots.build import publish_plots
from evaluator.sandbox.spec import Limits
from evaluator.settings import Scoring, limits_of
from evaluator.storage import layout, reconnect
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import database
from evaluator.storage.models import Benchmark, DatasetStatus, Run, RunStatus, Submission, isoformat

logger = logging.getLogger(__name__)
PREDICTIONS = "predictions"  # Submission.kind of a predictions file

_evaluating: set[str] = set()  # runs a thread of this process evaluates now: a duplicate message waits
_evaluating_lock = threading.Lock()


class RunSandbox(Sandbox, Protocol):
    """What a worker needs of its sandbox: evaluate_bundle's run(), and removing a dead attempt's container."""

    def remove_leftovers(self, run_id: str | None = None) -> int: ...


class LeaseLost(Exception):
    """Raised when this worker's lease ran out (renewals failed) or another took the run: record nothing."""


def run_folder(config: Config, run_id: str) -> Path:
    """Return the host folder of a run's attempt (bundle, extracted model, features copy)."""
    return run_folders.run_folder(config, run_id)  # an opaque name: the sandbox sees this path


def evaluate_run(run_id: str, *, blobs: BlobStore, sandbox: RunSandbox, config: Config,
                 worker: str | None = None) -> str | None:
    """Evaluate one run to a final state; a redelivery of a finished run does nothing.

    Returns the run's status after this call (None: no such run).

    Raises:
        runs.LeaseHeld: a live-looking worker holds the run; the message must come back later.
        LeaseLost: our lease ran out mid-evaluation; the message must come back to re-claim it.
    """
    worker = worker or workers.worker_name()
    with _evaluating_lock:
        if run_id in _evaluating:
            raise runs.LeaseHeld(run_id, worker, float(config.lease_s))
        _evaluating.add(run_id)
    try:
        with after_run.scope():  # what the run used is replaced once it is recorded, not while it runs
            return _claim_and_evaluate(run_id, blobs=blobs, sandbox=sandbox, config=config, worker=worker)
    finally:
        with _evaluating_lock:
            _evaluating.discard(run_id)


def _claim_and_evaluate(run_id: str, *, blobs: BlobStore, sandbox: RunSandbox, config: Config,
                        worker: str) -> str | None:
    claim = runs.acquire(run_id, worker, lease_s=config.lease_s, max_crashes=config.max_worker_crashes)
    if claim is None:
        row = Run.select(Run.status).where(Run.id == run_id).first()
        logger.info("Run %s is %s; ignoring this message.", run_id, row.status if row else "gone")
        return row.status if row else None
    if claim.attempt > 1 or claim.poisoned:
        # A dead attempt's container may still be running here, and its run folder is still there.
        sandbox.remove_leftovers(run_id)
        shutil.rmtree(run_folder(config, run_id), ignore_errors=True)
    if claim.poisoned:
        return RunStatus.FAILED.value
    keeper = LeaseKeeper(run_id, worker, claim.attempt, lease_s=config.lease_s, renew_s=config.lease_renew_s)
    keeper.start()
    try:
        run = Run.get_by_id(run_id)
        return _evaluate_claimed(run, blobs=blobs, sandbox=sandbox, config=config, worker=worker, keeper=keeper)
    except LeaseLost:
        raise
    except BaseException:  # NOTE: a worker shutdown (dramatiq's Shutdown) hands the run back too
        # Infrastructure (S3, DB, Docker), a shutdown or a bug: hand the run back so a retry can claim it
        # at once, and a graceful restart counts no crash. If the database is down for longer than this,
        # the retry re-claims the lease it still holds.
        try:
            _durable(config, "release", lambda: runs.release(run_id, worker))
        except reconnect.DATABASE_ERRORS as ex:
            logger.warning("Run %s could not be released (%s); a retry re-claims it.", run_id, ex)
        raise
    finally:
        keeper.stop()


def _durable(config: Config, what: str, call):  # type: ignore[no-untyped-def]
    """Run a database call of an attempt, riding out an outage shorter than the lease."""
    return reconnect.retrying(call, within_s=max(config.lease_s - config.lease_renew_s, 1.0), what=what)


def _evaluate_claimed(run: Run, *, blobs: BlobStore, sandbox: RunSandbox, config: Config, worker: str,
                      keeper: LeaseKeeper) -> str:
    run_id = str(run.id)
    submission = Submission.get_by_id(run.submission_id)
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    phase = phases.phase_of_run(run)
    # NOTE: the run's own phase decides data, task, metrics and limits: a run migrated to the next
    # phase is scored by that phase's rules, never by the phase it came from (Codabench #2193)
    rules = phases.effective(benchmark, phase)
    dataset = phases.dataset_of(benchmark, phase)
    run_dir = run_folders.prepare(config, run_id)
    stage_started = time.monotonic()
    try:
        own_limits = limits_of(rules)  # the row's JSON, parsed once
        limit = own_limits.bundle_bytes(config.max_bundle_bytes)
        ext = (layout.submission_extension(submission.object_key) or ("bundle", ""))[1]
        bundle_path = run_dir / f"{'predictions' if submission.kind == PREDICTIONS else 'bundle'}{ext}"
        try:
            # NOTE: the object its upload event named (ETag pinned), never one that replaced it later
            sha256 = submissions.fetch_bundle(submission, bundle_path, limit, blobs=blobs)
        except ValueError as ex:
            return _finish_failed(config, run_id, worker, "bundle_invalid", str(ex))
        except RunFailure as ex:  # the bundle is gone: the participant's to resubmit, no retry helps
            return _finish_failed(config, run_id, worker, ex.code, ex.message)
        if dataset.status == DatasetStatus.INVALID.value:
            return _finish_failed(config, run_id, worker, "internal",
                                  f"the benchmark's dataset {dataset.ref} is invalid: "
                                  f"{dataset.reason}; the organiser must publish a valid one")
        try:
            features, labels = stage_dataset(dataset, blobs=blobs, config=config)
        except RunFailure as ex:
            return _finish_failed(config, run_id, worker, ex.code, ex.message)
        download_s = time.monotonic() - stage_started

        if submission.kind == PREDICTIONS:  # a file of predictions: no sandbox, the same checked scorer
            evaluation = evaluate_predictions_file(
                bundle_path, labels, scoring=Scoring.of(rules, dataset), config=config, work_dir=run_dir / "work",
                run_id=run_id, file_format=ext.lstrip("."), expected_rows=dataset.row_count,
                should_cancel=keeper.should_stop, known_sha256={"predictions": sha256, "labels": dataset.labels_sha256},
                on_stage=lambda stage: _staged(config, run_id, worker, stage, keeper))
        else:
            evaluation = evaluate_bundle(
                bundle_path, features, labels, scoring=Scoring.of(rules, dataset), sandbox=sandbox,
                config=config, limits=Limits.from_config(config, own_limits), work_dir=run_dir / "work",
                run_id=run_id, should_cancel=keeper.should_stop,
                allowed_frameworks=benchmark.allowed_frameworks or None,
                known_sha256={"bundle": sha256, "features": dataset.features_sha256, "labels": dataset.labels_sha256},
                on_stage=lambda stage: _staged(config, run_id, worker, stage, keeper), attempt=run.attempts,
            )
        keeper.check()  # lost meanwhile: another worker may be evaluating it; publish nothing over its results
        prefix = layout.results_prefix(benchmark.id, run_id)
        provenance = {**evaluation.provenance, "dataset": dataset.ref, "worker": worker, "attempt": run.attempts}
        if phase is not None:
            provenance["phase"] = phase.slug
        provenance.setdefault("durations_s", {})["download"] = round(download_s, 3)
        stamps = provenance["stages"] = {"queued_at": isoformat(run.queued_at or run.created_at),
                                         "picked_up_at": isoformat(run.preparing_at),
                                         **provenance.get("stages", {})}
        if evaluation.plot_data:  # drawn once the run is recorded: the API and pages say "pending" until then
            provenance["plots"] = run_plots.PENDING
        record = evaluation.to_record()
        fault_pause(config, "publishing", run_id, keeper)
        # NOTE: a worker that stalled (its lease ran out, another took over) must not write over the taker's
        # results: a fresh lease, confirmed now, outlasts the writes; finish() records only for the owner.
        _durable(config, "lease", keeper.confirm)
        publish(blobs, config.results_bucket, prefix, record=record, provenance=provenance,
                predictions=evaluation.predictions, log=evaluation.log)
        stages.stamp(stamps, "published_at")  # in the run's row; metrics.json was written just before
        fault_pause(config, "recording", run_id, keeper)
        finished = _durable(config, "finish", lambda: runs.finish(
            run_id, status=evaluation.status, metrics=evaluation.metrics, private_metrics=evaluation.private_metrics,
            failure=evaluation.failure, provenance=provenance, results_prefix=prefix, owner=worker))
        final = _durable(config, "status", lambda: Run.get_by_id(run_id).status)
        logger.info("Run %s ended %s%s.", run_id, final, "" if finished else " (set elsewhere first)")
        after_run.release()  # recorded: the replacements it held back start now, before its plots
        if finished:
            draw_plots(blobs, config, prefix, evaluation.plot_data)
        return final
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def draw_plots(blobs: BlobStore, config: Config, prefix: str, plot_data: dict | None) -> None:
    """Draw and store a recorded run's plots: off the path to `succeeded`, which waits for metrics.json only.

    Never raises: the run is recorded, and plots are a view of its results. Until the index is written
    the API and pages say the plots are pending (run_plots.plots_of), for PENDING_S at most.
    """
    started = time.monotonic()
    for attempt in (1, 2):
        try:
            publish_plots(blobs, config.results_bucket, prefix, plot_data,
                          min_bin_rows_floor=config.plot_min_bin_rows)
            break
        except Exception:  # noqa: BLE001 - the loop boundary of an optional artifact (the store failed mid-way)
            logger.exception("The plots of %s could not be stored; the run keeps its metrics without plots", prefix)
            return
        except Shutdown:  # a graceful stop interrupts the actor once (notify_shutdown): the run is recorded,
            if attempt == 2:  # and its plots take a second, so they are drawn again rather than never
                raise
            logger.info("Plots of %s interrupted by the worker's shutdown; drawing them again", prefix)
    logger.debug("Plots of %s drawn in %.2fs after the run was recorded", prefix, time.monotonic() - started)


def _staged(config: Config, run_id: str, worker: str, stage: str, keeper: LeaseKeeper) -> None:
    _durable(config, stage, lambda: runs.advance(run_id, worker, stage))
    fault_pause(config, stage, run_id, keeper)


def fault_pause(config: Config, phase: str, run_id: str, keeper: LeaseKeeper) -> None:
    """Testing aid: hold the attempt at `phase` (EVALUATOR_FAULT_PAUSE_AT) so a test can kill its worker there.

    Off by default. The lease is renewed meanwhile; a cancel or a lost lease ends the pause.
    """
    if config.fault_pause_at != phase:
        return
    logger.warning("Run %s: paused at %s for up to %.0fs (fault injection, EVALUATOR_FAULT_PAUSE_AT)",
                   run_id, phase, config.fault_pause_s)
    deadline = time.monotonic() + config.fault_pause_s
    while time.monotonic() < deadline and not keeper.should_stop():
        time.sleep(0.1)


def _finish_failed(config: Config, run_id: str, worker: str, code: str, message: str) -> str:
    _durable(config, "finish", lambda: runs.finish(run_id, status=RunStatus.FAILED.value, owner=worker,
                                                   failure={"code": code, "message": message}))
    return _durable(config, "status", lambda: Run.get_by_id(run_id).status)


class LeaseKeeper(threading.Thread):
    """Renew our lease from a thread of its own while the attempt works (staging, sandbox, scoring).

    A database outage shorter than the lease costs nothing: renewals reconnect
    and retry every second, and the sandbox keeps running. Once no renewal has
    succeeded for a whole lease, the lease is lost (another worker may take the
    run over): the sandbox is stopped and the attempt records nothing.
    """

    def __init__(self, run_id: str, worker: str, attempt: int, *, lease_s: float, renew_s: float) -> None:
        super().__init__(name=f"lease-{run_id[:8]}", daemon=True)
        self._run_id, self._worker, self._attempt = run_id, worker, attempt
        self._lease_s, self._renew_s = lease_s, renew_s
        self._stopped = threading.Event()
        self._renewed_at = time.monotonic()  # the claim itself set the lease
        self.state = runs.RENEWED

    def should_stop(self) -> bool:
        """Polled by the sandbox: True once the run was cancelled elsewhere or our lease is gone."""
        return self.state != runs.RENEWED

    def check(self) -> None:
        if self.state == runs.LOST:
            raise LeaseLost(f"run {self._run_id}: the lease of attempt {self._attempt} was lost")

    def confirm(self) -> None:
        """Renew the lease now (compare-and-set on owner and attempt); LeaseLost if it is no longer ours."""
        if runs.renew_lease(self._run_id, self._worker, self._attempt, lease_s=self._lease_s) == runs.LOST:
            self.state = runs.LOST
            logger.warning("Run %s: attempt %d lost its lease before publishing; nothing written.",
                           self._run_id, self._attempt)
            self.check()
        self._renewed_at = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)

    def run(self) -> None:
        wait = self._renew_s
        while not self._stopped.wait(wait):
            try:
                with database.connection_context():
                    state = runs.renew_lease(self._run_id, self._worker, self._attempt, lease_s=self._lease_s)
            except reconnect.DATABASE_ERRORS as ex:
                reconnect.drop_connection()
                silent_s = time.monotonic() - self._renewed_at
                if silent_s >= self._lease_s:
                    logger.warning("Run %s: no lease renewal for %.0fs (%s); the lease is lost, stopping the "
                                   "attempt.", self._run_id, silent_s, ex)
                    self.state = runs.LOST
                    return
                logger.warning("Run %s: lease renewal failed (%s); %.0fs of the lease left, retrying.",
                               self._run_id, str(ex).strip().splitlines()[0] if str(ex).strip() else ex,
                               self._lease_s - silent_s)
                wait = min(1.0, self._renew_s)
                continue
            if state != runs.RENEWED:
                if state == runs.LOST:
                    logger.warning("Run %s: attempt %d lost its lease to another worker; stopping it.",
                                   self._run_id, self._attempt)
                self.state = state
                return
            self._renewed_at, wait = time.monotonic(), self._renew_s


def publish(blobs: BlobStore, bucket: str, prefix: str, *, record: dict, provenance: dict,
            predictions: bytes | None, log: bytes) -> None:
    """Write metrics.json (always: a failed run records its failure too), predictions and the log.

    The three writes are independent and each is a round trip to the store on the run's way to
    `succeeded`: they go at once (boto3's client is thread-safe), and all have ended when this returns.
    """
    document = {**record, "provenance": provenance}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish") as side:
        writes = [side.submit(blobs.put_bytes, bucket, prefix + "sandbox.log", log or b"", "text/plain; charset=utf-8")]
        if predictions is not None:
            writes.append(side.submit(blobs.put_bytes, bucket, prefix + "predictions.parquet", predictions))
        blobs.put_json(bucket, prefix + "metrics.json", document)
        for write in writes:
            write.result()  # re-raises the store's error
