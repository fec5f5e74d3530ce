"""Server-sent events of one run: an event per status or stage, derived from the run's row, until it ends.

Source of changes: the run's row, read by primary key every EVALUATOR_SSE_POLL_S
(not Redis pub/sub). The row is the source of truth that GET /v1/runs/{id}
answers from, so a stream shows what a poll shows, with the same visibility;
and every stage an attempt went through is stamped in it (the provenance's
attempts), so the stream derives the full list of events from one read: a
stage shorter than the poll interval, or one passed while the client was
reconnecting, is still delivered, in order. Pub/sub would need every writer of
a transition (worker, API cancel, the poison-pill guard) to publish, and loses
what is published while nobody listens.

Each stream holds a server thread (gunicorn gthread), so they are bounded:
at most EVALUATOR_SSE_MAX_STREAMS per API process (503 + Retry-After beyond),
each at most EVALUATOR_SSE_MAX_DURATION_S long (then the client reconnects with
Last-Event-ID and gets only what it has not seen), with a comment line every
EVALUATOR_SSE_HEARTBEAT_S so proxies keep an idle stream open. A stream ends
after the terminal event; a reconnect after it gets 204 (EventSource stops).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Callable, Iterator

from evaluator.errors import TooManyStreams
from evaluator.storage.models import TERMINAL_RUN_STATUSES, Run, RunStatus, isoformat

logger = logging.getLogger(__name__)

STAGES = (RunStatus.PREPARING.value, RunStatus.RUNNING.value, RunStatus.SCORING.value)
TERMINAL = frozenset(status.value for status in TERMINAL_RUN_STATUSES)
RECONNECT_MS = 1000  # the `retry:` field: how soon a client reconnects after the duration limit


@dataclasses.dataclass(frozen=True)
class StageEvent:
    """One status a run reached: `id` is unique per run and ordered as the events are."""

    id: str  # "<attempt>-<status>", e.g. "0-queued", "1-running", "2-succeeded"
    status: str
    attempt: int
    at: str | None


def stage_events(run: Run) -> list[StageEvent]:
    """Every status the run went through, in order, from its row alone (timestamps and attempts)."""
    events = [StageEvent("0-queued", RunStatus.QUEUED.value, 0, isoformat(run.queued_at or run.created_at))]
    history = [a for a in (run.provenance or {}).get("attempts") or [] if isinstance(a, dict)]
    if not history and run.attempts and run.status not in (RunStatus.QUEUED.value, *TERMINAL):
        history = [{"attempt": run.attempts, **{f"{stage}_at": isoformat(getattr(run, f"{stage}_at"))
                                                for stage in STAGES}}]  # a row older than the attempts list
    for attempt in history:
        found = attempt.get("attempt")
        number = found if isinstance(found, int) else 0
        for stage in STAGES:
            if attempt.get(f"{stage}_at"):
                events.append(StageEvent(f"{number}-{stage}", stage, number, str(attempt[f"{stage}_at"])))
        if attempt.get("outcome") == "released":  # an infrastructure error gave it back to the queue
            events.append(StageEvent(f"{number}-queued", RunStatus.QUEUED.value, number, str(attempt.get("ended_at"))))
    if run.status in TERMINAL:
        events.append(StageEvent(f"{run.attempts}-{run.status}", run.status, run.attempts, isoformat(run.finished_at)))
    return events


def unseen(events: list[StageEvent], last_event_id: str | None) -> list[StageEvent]:
    """The events after `last_event_id` (all of them when it is unknown)."""
    ids = [event.id for event in events]
    if last_event_id and last_event_id in ids:
        return events[ids.index(last_event_id) + 1:]
    return events


def frame(event: str, data: dict, event_id: str | None = None) -> bytes:
    """One SSE message; the JSON is ASCII (escapes), so nothing a model wrote can break a line."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class StreamSlots:
    """A per-process cap on open streams (each holds a server thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._open = 0
        self._lock = threading.Lock()

    def take(self) -> Callable[[], None]:
        """Take a slot; returns its release (idempotent). Raises TooManyStreams when none is free."""
        with self._lock:
            if self._open >= self.limit:
                raise TooManyStreams(f"this API process already serves {self.limit} event streams; retry shortly "
                                     "or poll GET /v1/runs/{id}", retry_after_s=5)
            self._open += 1
        released = [False]

        def release() -> None:
            with self._lock:
                if not released[0]:
                    released[0] = True
                    self._open -= 1

        return release

    @property
    def open(self) -> int:
        return self._open


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one read of the run gives the stream: its events, and the payload of the current one."""

    events: list[StageEvent]
    current: dict  # queue_position, eta_s, ...: added to the newest event
    run: dict | None  # the run as GET /v1/runs/{id} shows it, once it ended


class EventStream:
    """The WSGI body of a stream: iterated by the server thread, closed by it (the slot is released then)."""

    def __init__(self, read: Callable[[], Snapshot], *, run_id: str, last_event_id: str | None,
                 release: Callable[[], None],
                 max_duration_s: float, poll_s: float, heartbeat_s: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._read, self._run_id, self._last = read, run_id, last_event_id
        self._release = release
        self._max_s, self._poll_s, self._heartbeat_s = max_duration_s, poll_s, heartbeat_s
        self._clock, self._sleep = clock, sleep

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield f"retry: {RECONNECT_MS}\n\n".encode()
            started = last_sent = self._clock()
            while True:
                try:
                    snapshot = self._read()
                except Exception as ex:  # noqa: BLE001 - the database blinked, the run is gone: end; the client resumes
                    logger.warning("Event stream of run %s ended early: %s", self._run_id, type(ex).__name__)
                    yield b": the stream ended early; reconnect with Last-Event-ID\n\n"
                    return
                fresh = unseen(snapshot.events, self._last)
                for index, event in enumerate(fresh):
                    data = {"run_id": self._run_id, "status": event.status, "attempt": event.attempt, "at": event.at}
                    if index == len(fresh) - 1:
                        data.update(snapshot.current)
                    if event.status in TERMINAL:
                        data["run"] = snapshot.run
                        yield frame("finished", data, event.id)
                        return
                    yield frame("stage", data, event.id)
                    self._last, last_sent = event.id, self._clock()
                now = self._clock()
                if now - started >= self._max_s:
                    yield b": the stream's time is up; reconnect with Last-Event-ID\n\n"
                    return
                if now - last_sent >= self._heartbeat_s:
                    yield b": heartbeat\n\n"
                    last_sent = now
                self._sleep(min(self._poll_s, max(0.0, self._max_s - (now - started))))
        finally:
            self._release()

    def close(self) -> None:
        """Called by the WSGI server when the response ends (or the client went away)."""
        self._release()
