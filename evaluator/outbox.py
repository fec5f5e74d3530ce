"""The transactional outbox: a broker message is committed with the change that needs it, then relayed.

Intake writes a run and its pending `evaluate_run` message in one transaction, so
the webhook answers 2xx once that commits, Redis up or down. `deliver` sends what
is pending and stamps it sent; on PostgreSQL it takes rows FOR UPDATE SKIP LOCKED
(on SQLite, the embedded default, under BEGIN IMMEDIATE), so two relays never send
the same row. `resend_lost` asks the broker which queued runs it still holds a
message for, and re-sends the others: a Redis restart without persistence costs
seconds. `Relay` runs these (and the intake's other quick checks) in a daemon thread
of each API and worker process; the composition roots build and start it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import threading
import time
from typing import Callable, Iterable, Sequence

import peewee

from evaluator.errors import InfrastructureError
from evaluator.storage.db import database, rows
from evaluator.storage.models import OutboxMessage, Run, RunStatus, utcnow

logger = logging.getLogger(__name__)

KINDS = frozenset({"evaluate_run", "register_dataset", "rescore_run", "deliver_webhook"})  # the fields of intake.Queues
BATCH = 100
RESEND_SCAN_LIMIT = 1000  # queued runs compared with the broker per pass, oldest first
KEEP_SENT_S = 24 * 3600  # sent rows are kept this long (to read what was sent when), then pruned

Held = Callable[[str], "set[str] | None"]  # kind -> arguments of the messages the broker holds; None: unknown


@dataclasses.dataclass
class Delivery:
    sent: int = 0
    error: str | None = None  # why the first unsent message failed (the broker is down, ...)


def add(kind: str, argument: str) -> int:
    """Record a pending message; call it inside the transaction whose commit makes the message due."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox message kind {kind!r}")
    waiting = (OutboxMessage.select(OutboxMessage.id).where(
        (OutboxMessage.kind == kind) & (OutboxMessage.argument == argument) & OutboxMessage.sent_at.is_null())
        .limit(1).scalar())
    if waiting is not None:
        return waiting  # the same message is already on its way: one is enough
    return OutboxMessage.insert(kind=kind, argument=argument).execute()


def deliver(queues: object, ids: Iterable[int] | None = None, *, limit: int = BATCH) -> Delivery:
    """Send pending messages (these ids, else the oldest), stamp each sent; stop at the first failure.

    `queues` is an intake.Queues: one callable per kind. A failed send is
    counted on its row, which stays pending for the next pass.
    """
    result = Delivery()
    with _locking_transaction():
        senders = [kind for kind in sorted(KINDS) if getattr(queues, kind, None) is not None]
        query = OutboxMessage.select().where(OutboxMessage.sent_at.is_null() & OutboxMessage.kind.in_(senders))
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(list(ids)))
        query = query.order_by(OutboxMessage.id).limit(limit)
        if not isinstance(database.obj, peewee.SqliteDatabase):
            query = query.for_update(skip_locked=True)  # NOTE: another relay's rows are skipped, not sent twice
        sent = []
        for row in query:
            try:
                getattr(queues, row.kind)(row.argument)
            except Exception as ex:  # noqa: BLE001 - the broker's failure, whatever its type: keep the row
                result.error = f"{type(ex).__name__}: {ex}"[:500]
                (OutboxMessage.update(attempts=OutboxMessage.attempts + 1, last_error=result.error)
                 .where(OutboxMessage.id == row.id).execute())
                break
            sent.append(row.id)
        if sent:
            OutboxMessage.update(sent_at=utcnow()).where(OutboxMessage.id.in_(sent)).execute()
    result.sent = len(sent)
    return result


def flush(queues: object) -> int:
    """Send everything pending, batch after batch; raise InfrastructureError when the broker refuses."""
    total = 0
    while True:
        delivery = deliver(queues)
        total += delivery.sent
        if delivery.error:
            raise InfrastructureError(f"{pending_count()} broker messages wait to be sent ({delivery.error})")
        if delivery.sent < BATCH:
            return total


def _locking_transaction():
    if isinstance(database.obj, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")  # one writer at a time: the select and the stamp are one step
    return database.atomic()


def resend_lost(queues: object, held: Held, *, older_than_s: float, now: datetime.datetime | None = None,
                limit: int = RESEND_SCAN_LIMIT) -> list[str]:
    """Re-send queued runs the broker holds no message for; returns their ids.

    The broker is the source of truth: `held("evaluate_run")` lists the runs it
    has a message for (queued, delayed for a retry, or in a worker's hands).
    Only runs untouched for `older_than_s`, with no message pending or sent in
    that time, are compared, so a message on its way is never doubled.
    """
    now = now or utcnow()
    cutoff = now - datetime.timedelta(seconds=older_than_s)
    stale = [str(run_id) for (run_id,) in rows(Run.select(Run.id)
             .where((Run.status == RunStatus.QUEUED.value) & (Run.updated_at < cutoff))
             .order_by(Run.updated_at).limit(limit).tuples())]
    if not stale:
        return []
    recent = {argument for (argument,) in rows(OutboxMessage.select(OutboxMessage.argument).where(
        (OutboxMessage.kind == "evaluate_run") & OutboxMessage.argument.in_(stale)
        & (OutboxMessage.sent_at.is_null() | (OutboxMessage.sent_at > cutoff))).tuples())}
    candidates = [run_id for run_id in stale if run_id not in recent]
    holding = held("evaluate_run") if candidates else None
    if holding is None:
        return []
    lost = [run_id for run_id in candidates if run_id not in holding]
    logger.debug("Queued runs: %d untouched for %.0f s, %d without a recent message, %d the broker lacks",
                 len(stale), older_than_s, len(candidates), len(lost))
    if not lost:
        return []
    with database.atomic():
        still_queued = [str(run_id) for (run_id,) in rows(Run.select(Run.id).where(
            Run.id.in_(lost) & (Run.status == RunStatus.QUEUED.value)).tuples())]
        ids = [add("evaluate_run", run_id) for run_id in still_queued]
    delivery = deliver(queues, ids)
    logger.warning("Re-sent %d of %d queued runs the broker held no message for (was it restarted without "
                   "persistence?): %s%s", delivery.sent, len(still_queued), ", ".join(still_queued[:10]),
                   f"; not yet: {delivery.error}" if delivery.error else "")
    return still_queued


def prune(*, older_than_s: float = KEEP_SENT_S) -> int:
    """Delete rows sent longer ago than `older_than_s`; returns how many."""
    cutoff = utcnow() - datetime.timedelta(seconds=older_than_s)
    return OutboxMessage.delete().where(OutboxMessage.sent_at < cutoff).execute()


def pending_count() -> int:
    return OutboxMessage.select().where(OutboxMessage.sent_at.is_null()).count()


@dataclasses.dataclass(frozen=True)
class Duty:
    """One job of the relay thread: `run` every `interval_s` seconds, in a database connection of its own."""

    name: str
    interval_s: float
    run: Callable[[], object]


class Relay:
    """A daemon thread running its duties on their intervals; a failing duty is logged and tried again.

    Start it after the process forked (gunicorn's get_app() runs in each worker;
    the dramatiq worker starts it in after_worker_boot): a thread does not survive
    a fork.
    """

    def __init__(self, duties: Sequence[Duty], *, name: str = "outbox-relay") -> None:
        self._duties = [duty for duty in duties if duty.interval_s > 0]
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._failing: dict[str, str] = {}

    def start(self) -> Relay:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return self
        self._stop.clear()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        due = {duty.name: time.monotonic() for duty in self._duties}
        while not self._stop.is_set() and self._duties:
            for duty in self._duties:
                if time.monotonic() >= due[duty.name]:
                    self._run(duty)
                    due[duty.name] = time.monotonic() + duty.interval_s
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))

    def _run(self, duty: Duty) -> None:
        try:
            with database.connection_context():
                duty.run()
        except Exception as ex:  # noqa: BLE001 - a thread boundary: the database or broker may be down
            reason = f"{type(ex).__name__}: {ex}"[:300]
            if duty.name not in self._failing:
                logger.warning("Relay duty %s failed (%s); retrying every %.1f s", duty.name, reason,
                               duty.interval_s, exc_info=logger.isEnabledFor(logging.DEBUG))
            self._failing[duty.name] = reason
            return
        if self._failing.pop(duty.name, None) is not None:
            logger.warning("Relay duty %s works again", duty.name)
