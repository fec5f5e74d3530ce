"""gunicorn settings of the API service: `gunicorn -c http/gunicorn.conf.py` (or `evaluator api`)."""

from evaluator.config import Config

_config = Config.from_env()

wsgi_app = "evaluator.api.app:get_app()"
bind = f"{_config.api_host}:{_config.api_port}"
workers = _config.api_workers
worker_class = "sync"
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
