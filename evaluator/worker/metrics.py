"""Dramatiq's own Prometheus middleware on the workers, writing into this host's `worker` sample folder.

The middleware's families (dramatiq_messages_total, ..._duration_milliseconds)
land next to the run families the worker records (evaluator_run_*), in
Config.metrics_folder/worker: the API of the same host serves them in its
/metrics. A worker host of its own serves that folder itself when
EVALUATOR_WORKER_METRICS_PORT is set: the dramatiq CLI forks serve() beside
the worker processes (Dramatiq's exposition server binds 0.0.0.0:9191 whatever
is configured, so ours replaces it).
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import dramatiq
from dramatiq.middleware import prometheus

from evaluator.config import Config
from evaluator.observability import folders

logger = logging.getLogger(__name__)


class WorkerPrometheus(prometheus.Prometheus):
    """Dramatiq's Prometheus middleware with our folder and our exposition server (or none: port 0).

    Its metrics are made at the first boot hook: process_boot under the dramatiq
    CLI, before worker_boot for `evaluator dev`'s in-process worker (no process boot there).
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self._ready = False

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [serve] if self.config.worker_metrics_port > 0 else []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if self._ready:
            return
        prometheus.DB_PATH = str(folders.active() or folders.folder(self.config, "worker"))
        super().after_process_boot(broker)
        self._ready = True

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.after_process_boot(broker)
        for name in sorted(broker.get_declared_actors()):  # every family there at 0 before its first event
            labels = (broker.get_actor(name).queue_name, name)
            for family in (self.total_messages, self.total_errored_messages, self.total_retried_messages,
                           self.total_rejected_messages, self.inprogress_messages, self.inprogress_delayed_messages,
                           self.message_durations):
                family.labels(*labels)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._ready:
            super().after_worker_shutdown(broker, worker)

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: Any) -> None:
        if self._ready:  # a process that only sends (before its boot) has no metrics yet
            super().after_enqueue(broker, message, delay)


def serve() -> int:
    """The worker host's /metrics: its `worker` folder's samples, on EVALUATOR_WORKER_METRICS_HOST:_PORT."""
    from evaluator.observability.scrape import CONTENT_TYPE, SampleFiles, exposition

    config = Config.from_env()
    samples = SampleFiles(lambda: [folders.folder(config, "worker")])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body = exposition([samples])
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            logger.debug("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((config.worker_metrics_host, config.worker_metrics_port), Handler)
    logger.info("Worker metrics on http://%s:%d/metrics", config.worker_metrics_host, config.worker_metrics_port)
    server.serve_forever()
    return 0
