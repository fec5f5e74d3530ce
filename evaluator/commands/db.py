"""`evaluator db migrate|status`: apply and inspect the numbered schema scripts."""

from __future__ import annotations

import argparse

from evaluator.config import Config
from evaluator.storage import migrations
from evaluator.storage.db import init_database


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema").add_subparsers(dest="db_command", metavar="ACTION")
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=migrate)
    db.add_parser("status", help="list migrations and whether each is applied").set_defaults(func=status)


def migrate(args: argparse.Namespace, config: Config) -> int:
    applied = migrations.migrate(init_database(config.database_url))
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def status(args: argparse.Namespace, config: Config) -> int:
    for name, applied in migrations.status(init_database(config.database_url)):
        print(f"{'applied' if applied else 'pending'}  {name}")
    return 0
