"""A process's recent leaderboard rankings, reused while the runs they read are unchanged.

Ranking 10,000 participants takes tens of milliseconds even from slim rows, and a board is read
far more often than its runs change. A ranking is kept under its inputs (benchmark, rules, view,
instant) and a stamp of the rows it reads: the count of the benchmark's succeeded runs and the
sum of their `updated_at` (one index-only scan, migration 0011). Every write that changes what a
board reads sets the run's `updated_at` (a success, a re-score, a final selection, a baseline
flag), and any new value changes the sum, whatever the writing host's clock says. Runs still
being evaluated are not counted, so their lease renewals do not empty the cache.
Two stores: whole rankings (built in Python, a few MB each) and windows (ranked in SQL: the rows one
request shows, keyed by offset, limit and the viewer too; small, so many more are kept).

NOTE: a new write the ranking reads must set Run.updated_at (or join the stamp), or the cache
serves a stale board. The stamp is read before the ranking, so a write between the two only makes
a kept ranking newer than its key, never older. SQLite (the embedded default): nothing is kept.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

import peewee

from evaluator.storage.db import database
from evaluator.storage.models import RunStatus

T = TypeVar("T")
KEPT = 16  # rankings kept per process: one board of 10,000 participants is a few MB
KEPT_WINDOWS = 256  # windows kept (evaluator.board_window): one page and a viewer's row, some 100 entries each

_STAMP_SQL = ("SELECT count(*), COALESCE(sum(extract(epoch FROM updated_at)), 0) FROM run "
              "WHERE benchmark_id = %s AND status = %s")

_lock = threading.Lock()


class Store:
    """Kept results, the least recently used dropped past `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.kept: collections.OrderedDict[Hashable, object] = collections.OrderedDict()


RANKINGS = Store(KEPT)  # whole boards ranked in Python
WINDOWS = Store(KEPT_WINDOWS)  # the rows one request shows, ranked in SQL


def stamp(benchmark_id: str) -> tuple[int, str] | None:
    """The version of a benchmark's succeeded runs (None where the database has no row versions)."""
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        return None
    count, total = database.execute_sql(_STAMP_SQL, (benchmark_id, RunStatus.SUCCEEDED.value)).fetchone()
    return int(count), str(total)


def remember(benchmark_id: str, key: Hashable, compute: Callable[[], T], store: Store = RANKINGS) -> T:
    """compute() for these inputs, or its kept result while the benchmark's succeeded runs are unchanged."""
    version = stamp(benchmark_id)
    if version is None:
        return compute()
    full = (benchmark_id, key, version)
    kept = store.kept
    with _lock:
        if full in kept:
            kept.move_to_end(full)
            return kept[full]  # type: ignore[return-value]  # stored by this function for this key
    with paused_collector():
        result = compute()
    with _lock:
        kept[full] = result
        while len(kept) > store.size:
            kept.popitem(last=False)
    return result


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a ranking is built.

    A cold board of 10,000 participants allocates some 100,000 objects, none of them in a cycle; the
    collections they trigger walk every live object (the kept rankings too) and took about 40% of the
    build's CPU time. Reference counting still frees everything; the collector runs again afterwards.
    NOTE: the switch is process-wide: a concurrent build may re-enable it early (only slower then), and
    a caller that had it off keeps it off.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def clear() -> None:
    """Forget every kept ranking (tests that compare a cold build with a warm one)."""
    with _lock:
        RANKINGS.kept.clear()
        WINDOWS.kept.clear()
