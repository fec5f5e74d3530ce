"""What /metrics serves: the samples this host's processes wrote, and families read at scrape time.

Each scrape builds a fresh registry: the merged sample files (every API worker,
and the workers of this host when they share the folder, summed), plus the
database's and the broker's current state. A part that is down leaves its
families out (and is logged) instead of failing the scrape.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import peewee
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from evaluator.config import Config
from evaluator.observability import folders
from evaluator.observability.heartbeats import Heartbeats
from evaluator.storage.db import rows
from evaluator.storage.models import ACTIVE_RUN_STATUSES, OutboxMessage, Run, RunStatus, utcnow

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SampleFiles:
    """The samples written under these folders by every process of this host, merged per family.

    The live gauges (e.g. dramatiq_messages_inprogress) of a process that died
    without saying so (SIGKILL) are left out: it is not in progress any more.
    """

    def __init__(self, folders_of: Callable[[], list[Path]]) -> None:
        self._folders_of = folders_of

    def collect(self) -> Iterable[Metric]:
        files = [str(item) for path in self._folders_of() for item in sorted(path.glob("*.db"))
                 if not _dead_live_gauge(item)]
        return MultiProcessCollector.merge(files, accumulate=True)


def _dead_live_gauge(item: Path) -> bool:
    pid = folders.pid_of(item)
    return item.name.startswith("gauge_live") and pid is not None and not folders.alive(pid)


class InMemory:
    """This process's own samples, where no sample folder is in use (an app tested in one process)."""

    def collect(self) -> Iterable[Metric]:
        from evaluator.observability.families import LOCAL

        return LOCAL.collect()


class RunGauges:
    """Runs by status, active runs whose lease ran out, worker takeovers, broker messages the outbox holds."""

    def __init__(self, database: peewee.Database | peewee.DatabaseProxy) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        try:
            with self._database.connection_context():
                counts = dict(rows(Run.select(Run.status, peewee.fn.COUNT(Run.id)).group_by(Run.status).tuples()))
                expired = Run.select().where(Run.status.in_([s.value for s in ACTIVE_RUN_STATUSES]) & (
                    Run.lease_expires_at.is_null() | (Run.lease_expires_at < utcnow()))).count()
                crashes = Run.select(peewee.fn.COALESCE(peewee.fn.SUM(Run.crashes), 0)).scalar()
                waiting = OutboxMessage.select().where(OutboxMessage.sent_at.is_null()).count()
        except peewee.DatabaseError as ex:
            logger.warning("/metrics: the database did not answer (%s); its families are left out", ex)
            return
        runs = GaugeMetricFamily("evaluator_runs", "Runs by status now.", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], counts.get(status.value, 0))
        yield runs
        yield GaugeMetricFamily("evaluator_runs_lease_expired",
                                "Active runs whose worker stopped renewing their lease (dead or stuck).", value=expired)
        yield CounterMetricFamily("evaluator_run_worker_crashes",
                                  "Takeovers of runs whose worker died, over all runs.", value=int(crashes))
        yield GaugeMetricFamily("evaluator_outbox_messages_waiting",
                                "Broker messages committed but not sent yet (the broker is down or the relay behind).",
                                value=waiting)


class BrokerGauges:
    """Queue depth per queue (the broker's Redis lists) and the workers whose heartbeat is live."""

    def __init__(self, broker: Any, namespace: str, queues: Callable[[], Iterable[str]], beats: Heartbeats) -> None:
        self._broker = broker
        self._namespace = namespace
        self._queues = queues
        self._beats = beats

    def collect(self) -> Iterator[Metric]:
        try:
            sizes = queue_sizes(self._broker, self._namespace, sorted(self._queues()))
            beats = self._beats.live()
        except Exception as ex:  # noqa: BLE001 - redis' errors and more: the broker's families are left out
            logger.warning("/metrics: the broker did not answer (%s); its families are left out", ex)
            return
        depth = GaugeMetricFamily("evaluator_queue_depth", "Messages ready in each queue (its Redis list).",
                                  labels=["queue"])
        delayed = GaugeMetricFamily("evaluator_queue_delayed",
                                    "Delayed messages (retries, deferrals) not yet fetched, per queue.",
                                    labels=["queue"])
        dead = GaugeMetricFamily("evaluator_queue_dead_letters", "Dead-lettered messages kept, per queue.",
                                 labels=["queue"])
        for queue, (ready, waiting, failed) in sizes.items():
            depth.add_metric([queue], ready)
            delayed.add_metric([queue], waiting)
            dead.add_metric([queue], failed)
        yield from (depth, delayed, dead)
        yield GaugeMetricFamily("evaluator_workers_live", "Worker processes whose heartbeat is younger than "
                                "EVALUATOR_WORKER_STALE_S.", value=len(beats))
        per_host = GaugeMetricFamily("evaluator_worker_processes", "Live worker processes per host.", labels=["host"])
        hosts: dict[str, int] = {}
        for beat in beats:
            hosts[beat.host] = hosts.get(beat.host, 0) + 1
        for host, count in sorted(hosts.items()):
            per_host.add_metric([host], count)
        yield per_host
        yield GaugeMetricFamily("evaluator_sandboxes_in_use",
                                "Sandboxes running a participant's model now, over the live workers.",
                                value=sum(beat.sandboxes_in_use for beat in beats))


def queue_sizes(broker: Any, namespace: str, queues: list[str]) -> dict[str, tuple[int, int, int]]:
    """Return (ready, delayed, dead-lettered) message counts per queue.

    Dramatiq's Redis layout: `<ns>:<queue>` is the list of ready message ids,
    `<ns>:<queue>.DQ` the delayed ones, `<ns>:<queue>.XQ` a sorted set of dead letters.
    """
    client = getattr(broker, "client", None)
    if client is not None:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(f"{namespace}:{queue}")
            pipe.llen(f"{namespace}:{queue}.DQ")
            pipe.zcard(f"{namespace}:{queue}.XQ")
        counts = pipe.execute()
        return {queue: (int(counts[3 * i]), int(counts[3 * i + 1]), int(counts[3 * i + 2]))
                for i, queue in enumerate(queues)}
    held = getattr(broker, "queues", {})  # the in-process broker: its own queue objects
    dead = getattr(broker, "dead_letters_by_queue", {})
    return {queue: (_qsize(held.get(queue)), _qsize(held.get(f"{queue}.DQ")), len(dead.get(queue, ())))
            for queue in queues}


def _qsize(queue: Any) -> int:
    return int(queue.qsize()) if queue is not None else 0


def canonical_queues(broker: Any) -> list[str]:
    """The broker's declared queues without their delay (.DQ) and dead-letter (.XQ) companions."""
    return sorted(q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ")))


def exposition(collectors: Iterable[Any]) -> bytes:
    """Render these collectors as Prometheus text (HELP and TYPE lines included)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


def recorded(config: Config) -> SampleFiles | InMemory:
    """The collector of the samples recorded as things happen: this host's files, or this process's memory."""
    if folders.active() is not None:
        return SampleFiles(lambda: folders.host_folders(config))
    return InMemory()
