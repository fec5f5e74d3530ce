"""Work a run sets off that can wait until the run is recorded.

On a small host the CPU that replaces what a run used would otherwise come out of that same
run's time to `succeeded`. That work is a second of CPU for the next warm container to import
its framework, the scoring server's NumPy and Arrow imports when it has to be started again, and
Docker's removal of the finished container. So a worker's run holds that work in a scope
(pipeline.evaluate_run), lets it go once the run's result is recorded (release()), and in any
case when the scope ends, whatever happened. Outside a scope (the CLI, a test calling the
sandbox directly) the work starts at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

logger = logging.getLogger(__name__)

_held = threading.local()  # NOTE: per thread: a worker thread evaluates one run at a time


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Hold the work deferred by this thread until release() or the end of the block."""
    outer = getattr(_held, "tasks", None)
    _held.tasks = []
    try:
        yield
    finally:
        try:
            release()
        finally:
            _held.tasks = outer


def defer(task: Callable[[], None]) -> None:
    """Run `task` once the current run is recorded, or now when no run is in progress on this thread."""
    tasks = getattr(_held, "tasks", None)
    if tasks is None:
        task()
    else:
        tasks.append(task)


def release() -> None:
    """Run the work deferred so far, in order; a task's error is logged, never raised (the run is recorded)."""
    tasks = getattr(_held, "tasks", None) or []
    while tasks:
        task = tasks.pop(0)
        try:
            task()
        except Exception:  # noqa: BLE001 - the loop boundary of background work after the run's result
            logger.exception("Work deferred until a run was recorded failed")
