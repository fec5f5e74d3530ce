"""Ride out a short database outage: drop the dead connection, reconnect, retry until a deadline.

A PostgreSQL restart kills every open connection; the next query on one raises
OperationalError (or InterfaceError once psycopg2 has marked it closed). The
pool validates a connection when it hands it out, so dropping ours and asking
again gives a fresh one as soon as the server is back.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import peewee

from evaluator.storage.db import database

logger = logging.getLogger(__name__)

T = TypeVar("T")
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def drop_connection() -> None:
    """Forget this thread's connection without handing it back to the pool (it is dead)."""
    db = database.obj
    if db is None or db.is_closed():
        return
    try:
        if hasattr(db, "manual_close"):
            db.manual_close()
        else:
            db.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail in many ways; it is gone either way
        logger.debug("closing a dead database connection failed", exc_info=True)
        try:
            db._state.reset()  # the pool's bookkeeping of it is stale; start this thread afresh
        except AttributeError:
            pass


def retrying(call: Callable[[], T], *, within_s: float, what: str) -> T:
    """Return call(), retried with reconnects while the database is unreachable, for up to within_s."""
    deadline = time.monotonic() + within_s
    delay = 0.2
    while True:
        try:
            return call()
        except DATABASE_ERRORS as ex:
            drop_connection()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("Database unavailable during %s (%s); reconnecting in %.1fs",
                           what, str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
