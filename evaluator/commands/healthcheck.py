"""`evaluator healthcheck api|worker`: the containers' HEALTHCHECK (docker-compose.yml), 0 healthy, 1 not.

Docker restarts a container whose process exits (`restart: unless-stopped`); a health check catches the one that
runs but cannot work: an API whose /health fails, a worker whose Dramatiq processes are gone or that reaches
neither the broker nor the database, or whose processes stopped beating (hung: no heartbeat of this host's
Dramatiq processes within EVALUATOR_WORKER_STALE_S). One line on stdout says which.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from evaluator.config import Config
from evaluator.observability.heartbeats import RedisHeartbeats

HEALTHY, UNHEALTHY = 0, 1
_PROC = Path("/proc")


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser("healthcheck", help="exit 0 when this container's API or worker is healthy")
    check.add_argument("role", choices=("api", "worker"))
    check.add_argument("--timeout", type=float, default=5.0, help="seconds each probe may take")
    check.set_defaults(func=cmd_healthcheck)


def cmd_healthcheck(args: argparse.Namespace, config: Config) -> int:
    problem = api_problem(config, args.timeout) if args.role == "api" else worker_problem(config, args.timeout)
    print(f"unhealthy: {problem}" if problem else "healthy")
    return UNHEALTHY if problem else HEALTHY


def api_problem(config: Config, timeout_s: float) -> str | None:
    """Return why this host's API is unhealthy (its /health checks the database, broker and store), or None."""
    import requests

    host = "127.0.0.1" if config.api_host in ("0.0.0.0", "") else config.api_host
    try:
        response = requests.get(f"http://{host}:{config.api_port}/health", timeout=timeout_s)
    except requests.RequestException as ex:
        return f"/health unreachable: {ex}"
    if response.status_code != 200:
        return f"/health answered {response.status_code}: {response.text[:300]}"
    return None


def worker_problem(config: Config, timeout_s: float) -> str | None:
    """Return why this container's worker is unhealthy, or None."""
    processes = dramatiq_processes()
    if len(processes) < 2:  # Dramatiq's main process and at least one worker process
        return f"{len(processes)} live Dramatiq process(es) here, expected the main one and its workers"
    import redis

    client = redis.Redis.from_url(config.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        beats = RedisHeartbeats(client, config.broker_namespace).live()
    except redis.RedisError as ex:
        return f"broker unreachable: {ex}"
    here = socket.gethostname()
    if not any(beat.host == here and beat.pid in processes for beat in beats):
        return (f"no Dramatiq process of {here} has sent a heartbeat in the last {config.worker_stale_s:g}s "
                "(hung, or still starting)")
    import peewee

    from evaluator.storage.db import init_database, ping

    database = init_database(config.database_url)
    try:
        ping(database)
    except (peewee.OperationalError, peewee.InterfaceError) as ex:
        return f"database unreachable: {(str(ex).strip().splitlines() or [type(ex).__name__])[-1]}"
    finally:
        database.close()
    return None


def dramatiq_processes(proc: Path = _PROC) -> list[int]:
    """Return the pids of live (not zombie) processes running the evaluator's Dramatiq workers."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state = stat[stat.rfind(")") + 2:][:1]
        if b"dramatiq" in b" ".join(argv) and b"evaluator.worker.actors" in argv and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found
