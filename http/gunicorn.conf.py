"""gunicorn settings of the API service: `gunicorn -c http/gunicorn.conf.py`."""

import os

wsgi_app = "evaluator.api.app:get_app()"
bind = f"{os.environ.get('EVALUATOR_API_HOST', '0.0.0.0')}:{os.environ.get('EVALUATOR_API_PORT', '8000')}"
workers = int(os.environ.get("EVALUATOR_API_WORKERS", "2"))
worker_class = "sync"
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
