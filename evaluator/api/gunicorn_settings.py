"""gunicorn settings of the API service, and the gunicorn application `evaluator api` runs.

Slow clients: the worker's poller reads every request before a thread serves
it (evaluator.api.server), so clients that trickle their headers or body hold
no thread and /health keeps answering; heads and bodies that take longer than
their timeouts get 408. Bodies over EVALUATOR_API_MAX_BODY_BYTES get 413 from
the app (evaluator.api.middleware.BodyLimit).

Metrics: the master empties this host's `api` sample folder on start (before
it forks, so every worker writes there: prometheus_client's multiprocess mode)
and drops a worker's live gauges when it exits; /metrics in any worker sums all.

The settings live here, in the package, so an installed wheel serves the API
without the checkout; http/gunicorn.conf.py only imports them for
`gunicorn -c http/gunicorn.conf.py`.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from evaluator.api.server import PollerReadWorker
from evaluator.config import Config
from evaluator.errors import ConfigInvalid

WSGI_APP = "evaluator.api.app:get_app()"


def settings(config: Config) -> dict[str, Any]:
    """Return gunicorn's settings for this Config (names as in a gunicorn config file)."""
    return {
        "wsgi_app": WSGI_APP,
        "bind": f"{config.api_host}:{config.api_port}",
        "workers": config.api_workers,
        "worker_class": PollerReadWorker.configured(header_timeout_s=config.api_header_timeout_s,
                                                    body_timeout_s=config.api_body_timeout_s),
        "threads": config.api_threads,
        "worker_connections": 1000,  # per worker: slow clients beyond this wait in the listen backlog
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "on_starting": lambda server: _fresh_samples(config),
        "child_exit": lambda server, worker: _worker_exited(config, worker.pid),
    }


def _fresh_samples(config: Config) -> None:
    """In the master, before the workers fork: samples go to the `api` folder, emptied (counters restart)."""
    from evaluator.observability import folders

    folders.use_folder(config, "api", fresh=True)


def _worker_exited(config: Config, pid: int) -> None:
    from evaluator.observability import folders

    folders.mark_dead(pid, folders.folder(config, "api"))


def settings_from_env() -> dict[str, Any]:
    """Return the settings for the environment's Config; exit with one line on a bad events token.

    Used by http/gunicorn.conf.py (`gunicorn -c http/gunicorn.conf.py`, docker-compose).
    """
    config = Config.from_env()
    try:
        config.check_events_token()
    except ConfigInvalid as ex:
        raise SystemExit(f"error: {ex.code}: {ex.message}") from None
    return settings(config)


class ApiServer(BaseApplication):
    """gunicorn run from code: these settings, the app built by get_app() in each worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from evaluator.api.app import get_app

        return get_app()
