"""A named lock held for one transaction: PostgreSQL advisory locks, SQLite's single write lock."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import peewee

from evaluator.storage.db import database


@contextlib.contextmanager
def held(*name: str) -> Iterator[None]:
    """Run the block in a transaction that holds the lock `name`; callers with the same name queue.

    On PostgreSQL a transaction-scoped advisory lock (released at commit or rollback); SQLite
    takes its one write lock up front, which serializes every writer anyway.
    """
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        with database.atomic():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key(*name),))
            yield
    else:
        with database.atomic(**({"lock_type": "IMMEDIATE"} if database.transaction_depth() == 0 else {})):
            yield


def lock_key(*name: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, stable across processes."""
    digest = hashlib.sha256("\x00".join(name).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
