"""gunicorn settings of the API service: `gunicorn -c http/gunicorn.conf.py` (or `evaluator api`).

A thin file for docker-compose, process managers and the docs: the settings
themselves ship in the package (evaluator/api/gunicorn_settings.py), which is
what `evaluator api` runs without this checkout.
"""

from evaluator.api.gunicorn_settings import settings_from_env

globals().update(settings_from_env())
