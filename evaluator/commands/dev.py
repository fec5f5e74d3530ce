"""`evaluator dev` (the embedded default platform) and `evaluator demo` (a full evaluation on it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from evaluator.config import Config

logger = logging.getLogger(__name__)

# What `evaluator dev` writes into its data folder so that operator commands run from another
# shell (`tokens create`, `db status`, `reconcile`) use its database, store and broker.
DEV_SETTINGS = "dev.json"
_NOT_SHARED = frozenset({"token", "events_token", "client_config_file"})  # secrets kept elsewhere, or the client's


def register(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser("dev", help="run API, worker, SeaweedFS, database and broker on this machine")
    dev.set_defaults(func=cmd_dev)
    demo = subparsers.add_parser(
        "demo", help="evaluate sample models end to end on `evaluator dev` (started if needed)")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)


def admin_token(config: Config) -> str:
    """Return the embedded platform's admin token, creating it (file mode 600) on first start."""
    from evaluator import tokens

    path = Path(config.data_dir) / "admin.token"
    if path.exists():
        secret = path.read_text().strip()
        if tokens.authenticate(secret):
            return secret
    secret, _ = tokens.create_token("admin", "admin", "evaluator dev")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def write_dev_settings(config: Config) -> Path:
    """Record the settings dev chose (mode 600: it holds the store's credentials, like the rest of the folder)."""
    path = Path(config.data_dir) / DEV_SETTINGS
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _NOT_SHARED}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(settings, out, indent=2)
    return path


def adopt_dev_settings(config: Config) -> Config:
    """Use the settings of the `evaluator dev` of config.data_dir when no database is configured.

    Only settings still at their defaults are taken: anything exported wins. Says so on stderr,
    since the command then acts on dev's database rather than the default PostgreSQL.
    """
    defaults = Config()
    if config.database_url != defaults.database_url:
        return config
    path = Path(config.data_dir) / DEV_SETTINGS
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return config
    except (OSError, ValueError) as ex:
        logger.warning("Ignoring %s: %s", path, ex)
        return config
    fields = {f.name for f in dataclasses.fields(config)} - _NOT_SHARED
    changes = {name: value for name, value in (saved if isinstance(saved, dict) else {}).items()
               if name in fields and getattr(config, name) == getattr(defaults, name)
               and isinstance(value, type(getattr(defaults, name)))}
    if "database_url" not in changes:
        return config
    from evaluator.commands.devserver import dev_config

    print(f"note: using the database of `evaluator dev` in {Path(config.data_dir).resolve()} "
          "(set EVALUATOR_DATABASE_URL to use another)", file=sys.stderr)
    return dev_config(config.replace(**changes))


def _start(config: Config, on_fatal=None):
    from evaluator.commands.devserver import DevPlatform
    from evaluator.sandbox.build import ensure_images

    ensure_images(config, ("sklearn", "onnx"))
    platform = DevPlatform(config, on_fatal=on_fatal).start()
    from evaluator.storage.db import database

    with database.connection_context():
        token = admin_token(config)
    write_dev_settings(config)
    return platform, token


def cmd_dev(args: argparse.Namespace, config: Config) -> int:
    from evaluator.commands.devserver import dev_config
    from evaluator.logs import configure_logging

    config = dev_config(config)
    configure_logging(config)
    stopped = threading.Event()
    platform, token = _start(config, on_fatal=lambda _message: stopped.set())
    print(f"evaluator dev is up: API {config.api_base_url} (docs {config.api_base_url}/docs), "
          f"S3 {config.s3_endpoint_url}, broker {platform.broker_kind}")
    print(f"admin token: {Path(config.data_dir) / 'admin.token'}   data: {config.data_dir}   Ctrl-C stops everything")
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1.0):  # a timed wait: Ctrl-C interrupts it
            pass
    except KeyboardInterrupt:
        pass
    finally:
        platform.stop()
    if platform.failure:
        # The store is gone for good: say so and exit 3 (the platform is failing), never a quiet 0.
        print(f"error: s3_unavailable: {platform.failure}", file=sys.stderr)
        return 3
    return 0


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    import json

    from evaluator.commands.client import format_leaderboard, format_run
    from evaluator.commands.demo import run_demo
    from evaluator.commands.devserver import dev_config, redis_reachable
    from evaluator.logs import configure_logging

    config = dev_config(config)
    configure_logging(config.replace(log_level="WARNING"))  # the demo prints its own story
    platform = None
    if _healthy(config.api_base_url):
        print(f"using the running platform at {config.api_base_url}")
        token = (Path(config.data_dir) / "admin.token").read_text().strip()
    else:
        print(f"starting the embedded platform (data in {config.data_dir}; broker: "
              f"{'Redis' if redis_reachable(config.redis_url) else 'in-process'})")
        platform, token = _start(config)
    try:
        result = run_demo(config.api_base_url, token)
    finally:
        if platform is not None:
            platform.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for run in result["runs"]:
            print(format_run(run))
        print(format_leaderboard(result["leaderboard"]))
    return 0 if all(run["status"] == "succeeded" for run in result["runs"]) else 1


def _healthy(url: str) -> bool:
    import requests

    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
