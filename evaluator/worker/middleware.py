"""Worker middleware: a database connection per message, like the API's per request."""

from __future__ import annotations

import logging
import random
import socket
import threading
from typing import Any, Callable, Mapping

import dramatiq
import peewee
from dramatiq.broker import MessageProxy

from evaluator.config import Config
from evaluator.errors import ConfigInvalid

logger = logging.getLogger(__name__)


class DatabaseConnection(dramatiq.Middleware):
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.database: peewee.Database | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from evaluator.storage.db import database, init_database

        self.database = database.obj or init_database(self.database_url)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if self.database is not None:
            self.database.connect(reuse_if_open=True)

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *, result=None,
                              exception=None) -> None:
        if self.database is not None and not self.database.is_closed():
            self.database.close()

    after_skip_message = after_process_message


class PeriodicReconcile(dramatiq.Middleware):
    """Run the reconciler every interval in one worker process of the fleet (a Redis lock elects it).

    Every worker process also sweeps its host for orphans of dead attempts
    (containers and run folders of its deployment) a few times per lease, so a
    run cancelled after its worker died loses its container within one lease.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self._sweep_containers, name="sweep", daemon=True).start()
        threading.Thread(target=self._sweep_orphans, name="orphans", daemon=True).start()
        if self.config.reconcile_interval_s > 0:
            threading.Thread(target=self._loop, args=(broker,), name="reconcile", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _loop(self, broker: dramatiq.Broker) -> None:
        interval = self.config.reconcile_interval_s
        lock = f"{self.config.broker_namespace}:reconcile-lock"
        while not self._stop.wait(interval * random.uniform(0.5, 1.0)):
            try:
                client = getattr(broker, "client", None)  # None: the in-process broker, one process only
                if client is not None and not client.set(lock, socket.gethostname(), nx=True,
                                                         ex=max(1, int(interval * 0.9))):
                    continue
                self._run_once()
            except Exception:  # noqa: BLE001 - a loop boundary: log and try again next tick
                logger.error("Periodic reconcile failed", exc_info=True)

    def _sweep_containers(self) -> None:
        """Remove exited sandbox containers of this deployment a killed worker on this host left behind."""
        from evaluator.worker import services

        try:
            removed = services.sandbox().remove_leftovers()
            if removed:
                logger.info("Removed %d leftover sandbox containers", removed)
        except Exception:  # noqa: BLE001 - a thread boundary: Docker may be down; runs will say so
            logger.error("Could not sweep leftover containers", exc_info=True)

    def _sweep_orphans(self) -> None:
        from evaluator import orphans
        from evaluator.storage.db import database
        from evaluator.worker import services

        interval = max(1.0, self.config.lease_s / 3)
        while not self._stop.wait(interval * random.uniform(0.8, 1.0)):
            try:
                with database.connection_context():
                    orphans.sweep(services.sandbox(), self.config)
            except Exception:  # noqa: BLE001 - a loop boundary: Docker or the database may be down; next tick
                logger.warning("Could not sweep orphaned containers and run folders", exc_info=True)

    def _run_once(self) -> None:
        from evaluator import reconcile
        from evaluator.storage.db import database
        from evaluator.worker import actors, services

        with database.connection_context():
            reconcile.reconcile(config=self.config, blobs=services.blobs(), queues=actors.queues())


class ServedQueues(dramatiq.Middleware):
    """Consume only the run queues this host can serve (evaluator.capabilities), and every other queue.

    Set before the worker boots, when its consumers are made: a run queue left
    out gets no consumer, so its messages wait in Redis for a host that serves it.
    A `--queues` list given to dramatiq narrows it further.
    """

    def __init__(self, config: Config, docker_info: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.config = config
        self.docker_info = docker_info or _docker_info
        self.queues: set[str] = set()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from evaluator.capabilities import RUN_QUEUES, host_capabilities, served_queues

        capabilities, source = host_capabilities(self.config, self.docker_info)
        declared = set(broker.get_declared_queues()) | set(RUN_QUEUES)
        self.queues = served_queues(worker.consumer_whitelist or declared, capabilities)
        if not self.queues:  # an empty whitelist means "every queue" to dramatiq
            listed = sorted(worker.consumer_whitelist or ())
            raise ConfigInvalid(f"this worker would consume no queue: --queues {listed} lists none this host "
                                f"serves ({', '.join(sorted(capabilities))})")
        worker.consumer_whitelist = self.queues
        logger.info("Host %s serves the run queues %s (%s); consuming %s", socket.gethostname(),
                    ", ".join(q for q in RUN_QUEUES if q in capabilities), source, ", ".join(sorted(self.queues)))


def _docker_info() -> Mapping[str, Any]:
    import docker

    client = docker.from_env(timeout=10)
    try:
        return client.info()
    finally:
        client.close()


def worker_middleware(config: Config) -> list[dramatiq.Middleware]:
    return [DatabaseConnection(config.database_url), PeriodicReconcile(config), ServedQueues(config)]
