"""`evaluator db migrate|status`: apply and inspect the numbered schema scripts.

Also the operator commands' way into the database (`open_database`): `evaluator dev`'s
SQLite when no database is configured and dev keeps its data in this data folder, and one
sentence naming EVALUATOR_DATABASE_URL (never a driver traceback) when it cannot be reached.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from evaluator.config import Config
from evaluator.errors import InfrastructureError

if TYPE_CHECKING:
    import peewee


class DatabaseUnreachable(InfrastructureError):
    """Raised when an operator command cannot connect to the configured database."""

    code = "database_unreachable"


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema").add_subparsers(dest="db_command", metavar="ACTION")
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=migrate)
    db.add_parser("status", help="list migrations and whether each is applied").set_defaults(func=status)


def operator_config(config: Config) -> Config:
    """Return the Config an operator command uses: a running `evaluator dev`'s settings when none are set."""
    from evaluator.commands.dev import adopt_dev_settings

    return adopt_dev_settings(config)


def open_database(config: Config) -> peewee.Database:
    """Bind and connect the database of `config`; raise DatabaseUnreachable as one sentence."""
    import peewee

    from evaluator.storage.db import init_database

    database = init_database(config.database_url)
    try:
        database.connect(reuse_if_open=True)
    except (peewee.OperationalError, peewee.InterfaceError) as ex:
        reason = (str(ex).strip().splitlines() or [type(ex).__name__])[-1]
        raise DatabaseUnreachable(
            f"cannot use the database {redact(config.database_url)}: {reason.strip()} (set EVALUATOR_DATABASE_URL, "
            "or run the command where `evaluator dev` keeps its data: EVALUATOR_DATA_DIR)") from None
    return database


def redact(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def migrate(args: argparse.Namespace, config: Config) -> int:
    from evaluator.storage import migrations

    applied = migrations.migrate(open_database(operator_config(config)))
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def status(args: argparse.Namespace, config: Config) -> int:
    from evaluator.storage import migrations

    for name, applied in migrations.status(open_database(operator_config(config))):
        print(f"{'applied' if applied else 'pending'}  {name}")
    return 0
