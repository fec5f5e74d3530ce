"""Dramatiq actors: parse the message, call one plain function with its collaborators.

Import only after evaluator.worker.broker.setup() (or dramatiq.set_broker) has run.
"""

from __future__ import annotations

import logging
import random

import dramatiq

from evaluator.errors import InfrastructureError, is_retryable

if dramatiq.broker.global_broker is None:
    # @dramatiq.actor would silently create a default broker on localhost (STYLE R9).
    raise RuntimeError("call evaluator.worker.broker.setup() before importing evaluator.worker.actors")

from evaluator import runs  # noqa: E402
from evaluator.capabilities import CPU, RUN_QUEUES, queue_of_run  # noqa: E402
from evaluator.worker import services  # noqa: E402

# NOTE: the bodies import the pipeline lazily: the API process imports this module only to send
# messages, and must not need Docker or the scoring stack for that.

logger = logging.getLogger(__name__)

DATASETS = "datasets"
MAINTENANCE = "maintenance"  # every worker consumes it: mark_run_failed included, whatever queue the run had


def _retry_infrastructure_only(retries: int, exception: BaseException) -> bool:
    """Retry what the platform's services caused (errors.is_retryable), never the participant's own failure.

    Besides, a message cut short by this worker's shutdown or time limit comes back.
    """
    interrupted = isinstance(exception, (dramatiq.middleware.TimeLimitExceeded, dramatiq.middleware.Shutdown))
    return (retries < services.current_config().evaluate_max_retries
            and (interrupted or is_retryable(exception)))


# NOTE: declared on `cpu`, the default run queue; send_run puts each run's message on its benchmark's queue.
@dramatiq.actor(queue_name=CPU, min_backoff=2_000, max_backoff=60_000,
                retry_when=_retry_infrastructure_only,
                time_limit=6 * 3600 * 1000,  # backstop only: the sandbox enforces the benchmark's timeout
                on_retry_exhausted="mark_run_failed", notify_shutdown=True)
def evaluate_run(run_id: str, deferrals: int = 0) -> None:
    from evaluator import pipeline

    config = services.current_config()
    try:
        pipeline.evaluate_run(run_id, blobs=services.blobs(), sandbox=services.sandbox(), config=config)
    except runs.LeaseHeld as ex:
        # Never dropped: if the holder died, this message must take the run over once its lease runs out.
        delay_s = min(max(ex.retry_after_s, 0.0), float(config.lease_s)) + random.uniform(0.5, 1.5)
        log = logger.warning if deferrals == 0 else logger.info  # a duplicate of a long healthy run repeats
        log("Run %s is leased by %s; this message is deferred %.1fs, until the lease may have run out "
            "(deferral %d).", run_id, ex.owner, delay_s, deferrals + 1)
        _send_again(run_id, deferrals + 1, delay_s)
    except pipeline.LeaseLost as ex:
        logger.warning("%s; re-claiming it shortly.", ex)
        _send_again(run_id, deferrals, 1.0)


def send_run(run_id: str, *, deferrals: int = 0, delay_ms: int | None = None) -> dramatiq.Message:
    """Send an evaluate_run message on the run queue its benchmark's limits pick (capabilities.queue_for).

    Every sender of a run's message comes through here (intake, the outbox relay,
    the reconciler, a deferral), so a gVisor or GPU run is only ever consumed by a
    host that serves its queue; its retries stay on that queue (Retries re-enqueues
    the message as it is).
    """
    queue = queue_of_run(run_id)
    broker = evaluate_run.broker
    broker.declare_queue(queue)  # a no-op once declared (at import, below): a broker set later gets it too
    message = evaluate_run.message_with_options(args=(run_id,), kwargs={"deferrals": deferrals} if deferrals else {})
    return broker.enqueue(message.copy(queue_name=queue), delay=delay_ms)


def _send_again(run_id: str, deferrals: int, delay_s: float) -> None:
    """Send a fresh evaluate_run message (its infrastructure retries start again: this was no failure)."""
    try:
        send_run(run_id, deferrals=deferrals, delay_ms=int(delay_s * 1000))
    except Exception as ex:  # noqa: BLE001 - the broker is down: fail this message so Retries brings it back
        raise InfrastructureError(f"could not defer the message of run {run_id}: {ex}") from ex


for _queue in RUN_QUEUES:  # so a worker's consumers cover them (capabilities.served_queues picks which)
    evaluate_run.broker.declare_queue(_queue)


@dramatiq.actor(queue_name=MAINTENANCE, max_retries=10)
def mark_run_failed(message_data: dict, exception_data: dict) -> None:
    """End a run whose evaluation could not complete (on_retry_exhausted: its retries are spent)."""
    from evaluator.storage.models import RunStatus

    run_id = message_data["args"][0]
    last = (message_data.get("options", {}).get("traceback") or "").strip().splitlines()[-1:] or ["unknown error"]
    attempts = exception_data.get("retries", 0) + 1
    runs.finish(run_id, status=RunStatus.FAILED.value, failure={
        "code": "internal", "message": f"the evaluation failed {attempts} time(s) on the platform's side "
                                       f"({last[0][:300]}); an operator has the worker log"})


@dramatiq.actor(queue_name=DATASETS, min_backoff=2_000, retry_when=_retry_infrastructure_only,
                time_limit=3600 * 1000)
def register_dataset(dataset_id: str) -> None:
    from pathlib import Path

    from evaluator import datasets

    config = services.current_config()
    datasets.register_dataset(dataset_id, blobs=services.blobs(), config=config, work_dir=Path(config.work_dir))


@dramatiq.actor(queue_name=MAINTENANCE, min_backoff=2_000, retry_when=_retry_infrastructure_only,
                time_limit=3600 * 1000)
def rescore_run(run_id: str) -> None:
    from evaluator import rescoring

    rescoring.rescore_run(run_id, blobs=services.blobs(), config=services.current_config())


@dramatiq.actor(queue_name=MAINTENANCE, max_retries=0, time_limit=10 * 60 * 1000)
def reconcile() -> None:
    from evaluator import reconcile as reconciling

    config = services.current_config()
    reconciling.reconcile(config=config, blobs=services.blobs(), queues=queues())


WEBHOOKS = "webhooks"


@dramatiq.actor(queue_name=WEBHOOKS, min_backoff=2_000, max_backoff=60_000, retry_when=_retry_infrastructure_only,
                time_limit=120 * 1000)  # backstop: one attempt is bounded by EVALUATOR_WEBHOOK_TIMEOUT_S
def deliver_webhook(delivery_id: str) -> None:
    """POST one webhook delivery; a failed attempt schedules the next one with the backoff it was given."""
    from evaluator import webhooks

    outcome = webhooks.deliver(delivery_id, config=services.current_config())
    if outcome.status == "retry":
        try:
            deliver_webhook.send_with_options(args=(delivery_id,), delay=int((outcome.retry_in_s or 0) * 1000))
        except Exception as ex:  # noqa: BLE001 - the broker is down: the relay's stalled-delivery check re-sends it
            logger.warning("Webhook delivery %s: could not schedule its retry (%s); the relay re-sends it once "
                           "overdue", delivery_id, ex)


def queues():
    """The intake's message senders, bound to these actors."""
    from evaluator.intake import Queues

    return Queues(evaluate_run=lambda run_id: send_run(run_id),
                  register_dataset=lambda dataset_id: register_dataset.send(dataset_id),
                  rescore_run=lambda run_id: rescore_run.send(run_id),
                  deliver_webhook=lambda delivery_id: deliver_webhook.send(delivery_id))
