"""The broker factory, and setup(): the composition root of the dramatiq CLI."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from evaluator.config import Config


def create_broker(config: Config) -> RedisBroker:
    """Build a Redis broker whose dead workers' messages come back within a minute.

    Dramatiq's defaults (60 s heartbeat, 0.1 % maintenance chance) measured
    3-19 minutes before a killed worker's message was redelivered; see TECH-NOTES.
    """
    return RedisBroker(
        url=config.redis_url,
        namespace=config.broker_namespace,
        heartbeat_timeout=config.broker_heartbeat_timeout_ms,
        maintenance_chance=config.broker_maintenance_chance,
    )


def setup(config: Config | None = None) -> dramatiq.Broker:
    """Create the broker, set it global and wire the worker's middleware.

    `dramatiq evaluator.worker.broker:setup evaluator.worker.actors` calls this
    before it imports the actors, so they bind to the configured broker.
    """
    from evaluator.logs import configure_logging

    config = config or Config.from_env()
    configure_logging(config)
    broker = create_broker(config)
    _add_worker_middleware(broker, config)
    dramatiq.set_broker(broker)
    return broker


def _add_worker_middleware(broker: dramatiq.Broker, config: Config) -> None:
    from evaluator.worker import services
    from evaluator.worker.middleware import worker_middleware

    services.configure(config)
    for middleware in worker_middleware(config):
        broker.add_middleware(middleware)
