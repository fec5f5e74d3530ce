"""The database handle: a DatabaseProxy bound once by init_database(url)."""

from __future__ import annotations

from pathlib import Path

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database


def init_database(url: str) -> peewee.Database:
    """Connect the proxy to PostgreSQL (or SQLite for the embedded default)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        db = connect(url, pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000})
    else:
        db = connect(url, autoconnect=True)
    database.initialize(db)
    return db


def ping(db: peewee.Database) -> None:
    """Run a trivial query; raises peewee.OperationalError when the server is down."""
    db.execute_sql("SELECT 1").fetchone()
