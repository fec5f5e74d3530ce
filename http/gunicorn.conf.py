"""gunicorn settings of the API service: `gunicorn -c http/gunicorn.conf.py` (or `evaluator api`).

Slow clients: the worker's poller reads every request before a thread serves
it (evaluator.api.server), so clients that trickle their headers or body hold
no thread and /health keeps answering; heads and bodies that take longer than
their timeouts get 408. Bodies over EVALUATOR_API_MAX_BODY_BYTES get 413 from
the app (evaluator.api.middleware.BodyLimit).
"""

from evaluator.api.server import PollerReadWorker
from evaluator.config import Config
from evaluator.errors import ConfigInvalid

_config = Config.from_env()
try:
    _config.check_events_token()
except ConfigInvalid as ex:
    raise SystemExit(f"error: {ex.code}: {ex.message}") from None

wsgi_app = "evaluator.api.app:get_app()"
bind = f"{_config.api_host}:{_config.api_port}"
workers = _config.api_workers
worker_class = PollerReadWorker.configured(header_timeout_s=_config.api_header_timeout_s,
                                           body_timeout_s=_config.api_body_timeout_s)
threads = _config.api_threads
worker_connections = 1000  # per worker: slow clients beyond this wait in the listen backlog
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
