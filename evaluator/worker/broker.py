"""The broker factory, and setup(): the composition root of the dramatiq CLI."""

from __future__ import annotations

import logging
import os
import socket

import dramatiq
from dramatiq.common import dq_name

from evaluator.config import Config
from evaluator.worker.wakeup import WakingRedisBroker

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
HELD_SCAN_CAP = 50_000


def create_broker(config: Config) -> WakingRedisBroker:
    """Build a Redis broker whose dead workers' messages come back within a minute, and whose idle
    consumers are woken by a new message (evaluator.worker.wakeup).

    Dramatiq's defaults (60 s heartbeat, 0.1 % maintenance chance) measured
    3-19 minutes before a killed worker's message was redelivered; see TECH-NOTES.
    """
    import redis

    return WakingRedisBroker(
        # NOTE: a bounded connect: an unreachable Redis must not hold a webhook call (the outbox sends later)
        client=redis.Redis.from_url(config.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S),
        namespace=config.broker_namespace,
        heartbeat_timeout=config.broker_heartbeat_timeout_ms,
        maintenance_chance=config.broker_maintenance_chance,
    )


def _namespace(broker: dramatiq.Broker) -> str:
    """The Redis key prefix of a broker that has a Redis client (the callers checked it has one)."""
    return str(getattr(broker, "namespace"))


def held_arguments(broker: dramatiq.Broker, actor_name: str, *, cap: int = HELD_SCAN_CAP) -> set[str] | None:
    """Return the first argument of every `actor_name` message the broker still holds.

    Dramatiq's Redis layout: `<namespace>:<queue>.msgs` (and `<queue>.DQ.msgs`
    for delayed retries) map each message to its data from enqueue until its
    ack, so a queued, delayed or fetched-but-unfinished message is there, and
    nothing is after a Redis restart without persistence. evaluate_run's are
    read from every run queue (see evaluator.capabilities). None when this is no
    Redis broker or the queues hold more than `cap` messages (too dear to read).
    """
    client = getattr(broker, "client", None)
    if client is None:
        return None
    queues = message_queues(broker, actor_name)
    keys = [f"{_namespace(broker)}:{name}.msgs" for queue in queues for name in (queue, dq_name(queue))]
    if sum(client.hlen(key) for key in keys) > cap:
        logger.info("More than %d %s messages in Redis: not comparing queued runs with them", cap, "/".join(queues))
        return None
    held = set()
    for key in keys:
        for _, data in client.hscan_iter(key, count=1000):
            try:
                message = dramatiq.Message.decode(data)
            except dramatiq.errors.DecodeError:
                continue
            if message.actor_name == actor_name and message.args:
                held.add(str(message.args[0]))
    return held


def message_queues(broker: dramatiq.Broker, actor_name: str) -> list[str]:
    """The queues an actor's messages may be on: its own, and every run queue for evaluate_run."""
    from evaluator.capabilities import RUN_QUEUES

    own = broker.get_actor(actor_name).queue_name
    return [own, *(queue for queue in RUN_QUEUES if queue != own)] if actor_name == "evaluate_run" else [own]


def started_empty(broker: dramatiq.Broker) -> bool:
    """Return True while Redis lacks the epoch key `mark_epoch` sets: it is new, or it lost its data.

    The key has no expiry, so it is missing only on a new Redis or one that lost
    its data (a restart without persistence, a flush): then every queued run's
    message may be gone, and the caller compares them with the broker at once.
    """
    client = getattr(broker, "client", None)
    return client is not None and not client.exists(f"{_namespace(broker)}:epoch")


def mark_epoch(broker: dramatiq.Broker) -> None:
    """Record that this Redis's queued runs were compared (see started_empty)."""
    client = getattr(broker, "client", None)
    if client is not None:
        client.set(f"{_namespace(broker)}:epoch", f"{socket.gethostname()}:{os.getpid()}")


def elect(broker: dramatiq.Broker, name: str, ttl_s: float) -> bool:
    """Return True in the one process of the fleet that takes `name` for `ttl_s` (a Redis SET NX)."""
    client = getattr(broker, "client", None)
    if client is None:
        return True  # the in-process broker: one process only
    owner = f"{socket.gethostname()}:{os.getpid()}"
    return bool(client.set(f"{_namespace(broker)}:{name}-lock", owner, nx=True, px=max(1, int(ttl_s * 1000))))


def setup(config: Config | None = None, broker: dramatiq.Broker | None = None, *,
          worker: bool | None = None) -> dramatiq.Broker:
    """Create the broker, set it global and wire the worker's middleware.

    `dramatiq evaluator.worker.broker:setup evaluator.worker.actors` calls this
    before it imports the actors, so they bind to the configured broker.
    Called so (without a config), it first refuses an unusable events token.
    `broker` replaces the Redis broker (`evaluator dev` without Redis: an in-process one);
    either way the worker's middleware is wired here, once.
    `worker` (default: called without a config, i.e. by the dramatiq CLI) says this process
    consumes: it writes samples to this host's `worker` folder, beats and records Dramatiq's
    metrics; the API and the CLI commands only send.
    """
    from evaluator.logs import configure_logging

    if worker is None:
        worker = config is None
    if config is None:  # the worker's own entry point: refuse a forgeable webhook secret before anything starts
        config = Config.from_env()
        refuse_to_start_unless_configured(config)
        from evaluator.observability import folders

        folders.use_folder(config, "worker")  # NOTE: before anything imports prometheus_client
    configure_logging(config)
    broker = broker if broker is not None else create_broker(config)
    _add_worker_middleware(broker, config)
    if worker:
        _add_observability(broker, config)
    dramatiq.set_broker(broker)
    return broker


def _add_observability(broker: dramatiq.Broker, config: Config) -> None:
    """Heartbeats always; Dramatiq's Prometheus middleware where this process writes sample files."""
    from evaluator.observability import folders
    from evaluator.worker.heartbeat import Heartbeat

    broker.add_middleware(Heartbeat(config))
    if folders.active() is not None:
        from evaluator.worker.metrics import WorkerPrometheus  # NOTE: imports Dramatiq's, which reads the folder

        broker.add_middleware(WorkerPrometheus(config))


def refuse_to_start_unless_configured(config: Config) -> None:
    """Exit with one line (no traceback) when the events token is empty or the published placeholder."""
    from evaluator.errors import ConfigInvalid

    try:
        config.check_events_token()
    except ConfigInvalid as ex:
        raise SystemExit(f"error: {ex.code}: {ex.message}") from None


def _add_worker_middleware(broker: dramatiq.Broker, config: Config) -> None:
    from evaluator.worker import services
    from evaluator.worker.middleware import worker_middleware
    from evaluator.worker.relay import OutboxRelay

    services.configure(config)
    for middleware in worker_middleware(config):
        broker.add_middleware(middleware)
    broker.add_middleware(OutboxRelay(config))
    broker.add_middleware(PickupTimeout(config.broker_worker_timeout_ms))
    broker.add_middleware(services.SandboxPool())


class PickupTimeout(dramatiq.Middleware):
    """Set how long an idle consumer waits for a message (Dramatiq's worker_timeout, 1,000 ms by default).

    An idle Redis consumer backs off up to worker_timeout between looks, so a run
    queued into an idle worker waited up to a second before pickup. The dramatiq
    CLI has no option for it; the worker's consumers are made after this hook.
    """

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = max(1, int(timeout_ms))

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        worker.worker_timeout = self.timeout_ms
