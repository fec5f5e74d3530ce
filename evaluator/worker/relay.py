"""The relay thread of an API or worker process: which duties it runs, bound to the broker and the Config.

get_app() starts one in each gunicorn worker; the OutboxRelay middleware starts
one in each dramatiq worker process (after its fork).
"""

from __future__ import annotations

import logging

import dramatiq
import redis

from evaluator import outbox
from evaluator.config import Config
from evaluator.worker.broker import elect, held_arguments, mark_epoch, started_empty

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0
# After Redis started empty every queued run is compared, however new: a message sent before the loss is gone,
# one sent since is in Redis (held), and one still pending in the outbox is skipped by resend_lost.
FRESH_REDIS_GRACE_S = 0.0
FRESH_LOCK_S = 5.0  # one process compares them; another retries when this runs out
WEBHOOK_CHECK_INTERVAL_S = 30.0  # how often pending webhook deliveries whose retry is long overdue are re-sent


def build_relay(config: Config, broker: dramatiq.Broker) -> outbox.Relay:
    """Send the outbox about every second; compare queued runs with the broker and HEAD pending uploads
    every few seconds, in one process of the fleet at a time (a Redis lock elects it), and at once
    when Redis is seen to have started empty."""
    from evaluator import reconcile
    from evaluator.worker import actors, services

    queues = actors.queues()
    check_s, uploads_s = config.outbox_check_interval_s, config.reconcile_uploads_interval_s
    resend_every_s = min(check_s, config.outbox_relay_interval_s) if check_s > 0 else 0  # 0: off

    def held(kind: str) -> set[str] | None:
        return held_arguments(broker, kind)

    def resend_lost() -> None:
        # Checked about every second: a Redis that restarted empty costs a second, not a check interval.
        if started_empty(broker) and elect(broker, "outbox-fresh", FRESH_LOCK_S):
            logger.warning("Redis has no epoch key (it is new, or it lost its data): comparing queued runs with "
                           "its messages now")
            outbox.resend_lost(queues, held, older_than_s=FRESH_REDIS_GRACE_S)
            mark_epoch(broker)  # NOTE: only once compared: a failed pass is retried when the lock expires
        elif elect(broker, "outbox-check", check_s * 0.9):
            outbox.resend_lost(queues, held, older_than_s=config.outbox_resend_after_s)

    def pending_uploads() -> None:
        try:
            elected = elect(broker, "upload-check", uploads_s * 0.9)
        except redis.RedisError:
            elected = True  # Redis is down: check anyway; intake is idempotent and its messages wait in the outbox
        if elected:
            reconcile.check_pending_uploads(config=config, blobs=services.blobs(), queues=queues)

    def webhooks_stalled() -> None:
        from evaluator import webhooks

        if elect(broker, "webhooks-stalled", WEBHOOK_CHECK_INTERVAL_S * 0.9):
            webhooks.resend_stalled()

    return outbox.Relay([
        outbox.Duty("deliver", config.outbox_relay_interval_s, lambda: outbox.flush(queues)),
        outbox.Duty("resend-lost", resend_every_s, resend_lost),
        outbox.Duty("pending-uploads", uploads_s, pending_uploads),
        outbox.Duty("prune", PRUNE_INTERVAL_S, outbox.prune),
        outbox.Duty("webhooks-stalled", WEBHOOK_CHECK_INTERVAL_S, webhooks_stalled),
    ])


class OutboxRelay(dramatiq.Middleware):
    """Start the relay when a worker process boots, stop it when it shuts down."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.relay: outbox.Relay | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from evaluator.storage.db import database, init_database

        # NOTE: dramatiq runs after_* hooks in reverse order: DatabaseConnection's has not bound the proxy yet.
        if database.obj is None:
            init_database(self.config.database_url)
        self.relay = build_relay(self.config, broker).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.relay is not None:
            self.relay.stop()
