"""Worker heartbeats: each worker process says it is alive, and how many sandboxes it runs, every few seconds.

A beat is `<namespace>:heartbeat:<host>:<pid>` in Redis, a JSON value with a TTL
of EVALUATOR_WORKER_STALE_S: a process that stops beating (killed, hung, its host
gone) disappears from the live set by itself, whatever host it was on. The API
reads the live set at scrape time (evaluator_workers_live, evaluator_sandboxes_in_use)
and in /health (degraded when it is empty). Without Redis (`evaluator dev` on its
in-process broker) the beats stay in this process's memory, where its worker runs too.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from typing import Any, Protocol

KEY = "heartbeat"


@dataclasses.dataclass(frozen=True)
class Beat:
    """What one worker process last said about itself."""

    host: str
    pid: int
    sandboxes_in_use: int = 0
    threads: int = 0
    at: float = 0.0  # epoch seconds

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Beat | None:
        try:
            data = json.loads(raw)
            return cls(host=str(data["host"]), pid=int(data["pid"]),
                       sandboxes_in_use=int(data.get("sandboxes_in_use", 0)), threads=int(data.get("threads", 0)),
                       at=float(data.get("at", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None


class Heartbeats(Protocol):
    def beat(self, beat: Beat, ttl_s: float) -> None: ...

    def forget(self, host: str, pid: int) -> None: ...

    def live(self) -> list[Beat]: ...


class RedisHeartbeats:
    """Beats as keys with a TTL in the broker's Redis, under the broker's namespace."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._prefix = f"{namespace}:{KEY}:"

    def _key(self, host: str, pid: int) -> str:
        return f"{self._prefix}{host}:{pid}"

    def beat(self, beat: Beat, ttl_s: float) -> None:
        self._client.set(self._key(beat.host, beat.pid), beat.to_json(), px=max(1, int(ttl_s * 1000)))

    def forget(self, host: str, pid: int) -> None:
        self._client.delete(self._key(host, pid))

    def live(self) -> list[Beat]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "*"
        keys = list(self._client.scan_iter(match=pattern, count=1000))
        if not keys:
            return []
        beats = [Beat.from_json(raw) for raw in self._client.mget(keys) if raw is not None]  # expired meanwhile
        return sorted((b for b in beats if b is not None), key=lambda b: (b.host, b.pid))


class MemoryHeartbeats:
    """Beats of the worker threads of this process (the in-process broker has no Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: dict[tuple[str, int], tuple[Beat, float]] = {}

    def beat(self, beat: Beat, ttl_s: float) -> None:
        with self._lock:
            self._beats[(beat.host, beat.pid)] = (beat, time.monotonic() + ttl_s)

    def forget(self, host: str, pid: int) -> None:
        with self._lock:
            self._beats.pop((host, pid), None)

    def live(self) -> list[Beat]:
        now = time.monotonic()
        with self._lock:
            return sorted((b for b, until in self._beats.values() if until > now), key=lambda b: (b.host, b.pid))


IN_PROCESS = MemoryHeartbeats()


def heartbeats_of(broker: Any, namespace: str) -> Heartbeats:
    """The beats store of a broker: its Redis when it has one, else this process's memory."""
    client = getattr(broker, "client", None)
    return RedisHeartbeats(client, namespace) if client is not None else IN_PROCESS


def no_worker_reason(beats: Heartbeats, stale_s: float) -> str | None:
    """Return why /health is degraded (no live worker), or None while at least one worker beats."""
    if beats.live():
        return None
    return f"no worker has sent a heartbeat in the last {stale_s:g} s (EVALUATOR_WORKER_STALE_S)"
