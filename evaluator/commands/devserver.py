"""The embedded default: API, worker, SeaweedFS, database and broker in one command on one machine.

`evaluator dev` runs it until Ctrl-C; `evaluator demo` starts it for the length
of the demo when none is running. Data persists in config.data_dir.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from evaluator.config import Config
from evaluator.errors import ConfigInvalid
from evaluator.storage.seaweed import SeaweedServer, Webhook
from evaluator.storage.supervisor import S3Supervisor

if TYPE_CHECKING:  # dramatiq is imported when the platform starts, not with this module
    import dramatiq

logger = logging.getLogger(__name__)

DEFAULT_S3_PORT = 8333


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        logger.debug("%s %s", self.address_string(), format % args)


def dev_config(config: Config) -> Config:
    """Fill in what the embedded default decides: SQLite in the data folder, its own S3 credentials."""
    data = Path(config.data_dir).resolve()
    changes: dict = {"work_dir": str(data / "work"), "data_dir": str(data)}
    if not config.metrics_dir:
        changes["metrics_dir"] = str(data / "metrics")
    try:
        config.check_events_token()
    except ConfigInvalid:  # unset or the placeholder: the embedded platform makes its own
        changes["events_token"] = events_token(data)
    if config.database_url == Config().database_url:
        changes["database_url"] = f"sqlite:///{data / 'evaluator.db'}"
    if config.s3_endpoint_url == Config().s3_endpoint_url:
        changes["s3_endpoint_url"] = f"http://127.0.0.1:{DEFAULT_S3_PORT}"
    return config.replace(**changes)


def events_token(data: Path) -> str:
    """Return the webhook secret kept in the data folder, created (mode 600) on first start.

    Kept, not regenerated: the filer's notification.toml and any other sender
    configured by hand keep working across restarts.
    """
    path = data / "events.token"
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if _unusable(token):
        data.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    return token


def _unusable(token: str) -> bool:
    try:
        Config(events_token=token).check_events_token()
    except ConfigInvalid:
        return True
    return False


def redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@dataclasses.dataclass
class DevPlatform:
    config: Config
    s3: SeaweedServer | None = None
    http: WSGIServer | None = None
    worker: dramatiq.Worker | None = None
    broker_kind: str = ""
    # Called (from the supervisor's thread) when the S3 child keeps dying: the caller stops the platform.
    on_fatal: Callable[[str], None] | None = None
    supervisor: S3Supervisor | None = None
    failure: str = ""

    def start(self) -> DevPlatform:
        import dramatiq

        from evaluator.storage import migrations
        from evaluator.storage.blobs import BlobStore
        from evaluator.storage.db import init_database

        config = self.config
        from evaluator.observability import folders

        folders.use_folder(config, "dev", fresh=True)  # API and worker of this process: one sample folder
        Path(config.work_dir).mkdir(parents=True, exist_ok=True)
        database = init_database(config.database_url)
        migrations.migrate(database)
        self._start_s3()
        blobs = BlobStore.from_config(config)
        blobs.ensure_buckets(config.datasets_bucket, config.bundles_bucket, config.results_bucket)
        blobs.set_cors(config.bundles_bucket, config.cors_origins)  # the web pages upload bundles from a browser
        broker = self._broker()
        from evaluator.api.app import build_app

        app = build_app(config)
        self.http = make_server(config.api_host, config.api_port, app, server_class=_ThreadingWSGIServer,
                                handler_class=_QuietHandler)
        threading.Thread(target=self.http.serve_forever, name="api", daemon=True).start()
        self.worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=config.broker_worker_timeout_ms)
        self.worker.start()
        logger.info("API on %s, S3 on %s, database %s, broker %s", config.api_base_url, config.s3_endpoint_url,
                    config.database_url, self.broker_kind)
        return self

    def _start_s3(self) -> None:
        port = int(self.config.s3_endpoint_url.rsplit(":", 1)[-1].strip("/"))
        self.s3 = SeaweedServer(Path(self.config.data_dir) / "s3", self.config.s3_access_key,
                                self.config.s3_secret_key, s3_port=port,
                                webhook=Webhook(f"{self.config.api_base_url}/v1/events/s3", self.config.events_token))
        self.s3.start()
        self.supervisor = S3Supervisor(self.s3, self._fatal, max_restarts=self.config.dev_s3_max_restarts).start()

    def _fatal(self, message: str) -> None:
        logger.error("%s", message)
        self.failure = message
        if self.on_fatal is not None:
            self.on_fatal(message)

    def _broker(self) -> dramatiq.Broker:
        import dramatiq
        from dramatiq.brokers.stub import StubBroker

        from evaluator.worker.broker import setup

        broker: dramatiq.Broker | None = None
        if redis_reachable(self.config.redis_url):
            self.broker_kind = f"Redis at {self.config.redis_url}"
        else:
            logger.warning("Redis is not reachable at %s: using an IN-PROCESS broker. Runs queued now are lost "
                           "if this process stops (the reconciler re-queues them on the next start).",
                           self.config.redis_url)
            broker, self.broker_kind = StubBroker(), "in-process (no Redis)"
            broker.emit_after("process_boot")
        return setup(self.config, broker, worker=True)

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.worker is not None:
            self.worker.stop(timeout=10_000)
        if self.s3 is not None:
            self.s3.stop()
