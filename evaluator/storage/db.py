"""The database handle: a DatabaseProxy bound once by init_database(url)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()


def rows(query: peewee.BaseQuery) -> Iterable[tuple[Any, ...]]:
    """A `.tuples()` query as what it yields (the peewee stubs type it as yielding models)."""
    return cast(Iterable[tuple[Any, ...]], query)


class BaseModel(peewee.Model):
    class Meta:
        database = database


def init_database(url: str) -> peewee.Database:
    """Connect the proxy to PostgreSQL (or SQLite for the embedded default)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        db = connect(url, pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000})
    else:
        # A pool: the per-request/per-message close() hands the connection back instead of
        # tearing it down (a fresh PostgreSQL connection cost 2.6 ms of a 9 ms grant request).
        scheme, sep, rest = url.partition("://")
        if "+pool" not in scheme and scheme.startswith("postgres"):
            url = f"{scheme}+pool{sep}{rest}"
        db = connect(url, max_connections=32, stale_timeout=300, timeout=10)
    database.initialize(db)
    return db


def ping(db: peewee.Database) -> None:
    """Run a trivial query; raises peewee.OperationalError when the server is down."""
    db.execute_sql("SELECT 1").fetchone()
