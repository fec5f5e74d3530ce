"""Each worker process beats every EVALUATOR_WORKER_HEARTBEAT_S: alive, and how many sandboxes it runs now.

The beats (evaluator.observability.heartbeats) are what /health and the
evaluator_workers_live / evaluator_sandboxes_in_use families read, from any host.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq

from evaluator.config import Config
from evaluator.observability.heartbeats import Beat, Heartbeats, heartbeats_of

logger = logging.getLogger(__name__)


class InUse:
    """How many sandboxes this process runs now (the beat carries it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> InUse:
        with self._lock:
            self._count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


SANDBOXES = InUse()


class CountedSandbox:
    """A sandbox whose run() calls are counted in SANDBOXES; everything else goes to the wrapped one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def run(self, spec: Any, **kwargs: Any) -> Any:
        with SANDBOXES:
            return self.inner.run(spec, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Heartbeat(dramatiq.Middleware):
    """Beat from a thread of each worker process from its boot until its shutdown (then the beat is removed)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = threading.Event()
        self._beats: Heartbeats | None = None
        self._threads = 0

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._beats = heartbeats_of(broker, self.config.broker_namespace)
        self._threads = int(getattr(worker, "worker_threads", 0) or 0)
        self._stop.clear()
        self.beat_once()
        threading.Thread(target=self._loop, name="heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._beats is not None:
            try:
                self._beats.forget(socket.gethostname(), os.getpid())
            except Exception as ex:  # noqa: BLE001 - Redis may be down: the beat expires by itself
                logger.info("Could not remove this worker's heartbeat (%s); it expires by itself", ex)

    def beat_once(self) -> None:
        assert self._beats is not None
        self._beats.beat(Beat(host=socket.gethostname(), pid=os.getpid(), sandboxes_in_use=SANDBOXES.count,
                              threads=self._threads, at=time.time()), ttl_s=self.config.worker_stale_s)

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(max(0.1, self.config.worker_heartbeat_s)):
            try:
                self.beat_once()
                if failing:
                    logger.info("Heartbeats reach the broker again")
                failing = False
            except Exception:  # noqa: BLE001 - a loop boundary: the broker may be down; beat again next tick
                if not failing:
                    logger.warning("Could not write this worker's heartbeat", exc_info=True)
                failing = True
