"""Supervision of `evaluator dev`'s SeaweedFS child: restart it when it dies, a bounded number of times.

Without it a dead `weed` left the API up, handing out presigned grants into a store
that no longer answered. A crash is restarted (same data folder, same S3 port); more
than `max_restarts` crashes within `window_s` means something is wrong that a restart
will not fix, and then `on_fatal` is called with a message saying so: `evaluator dev`
stops everything and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from typing import Callable

from evaluator.storage.seaweed import SeaweedServer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class S3Supervisor:
    server: SeaweedServer
    on_fatal: Callable[[str], None]
    max_restarts: int = 3
    window_s: float = 600.0
    poll_s: float = 0.5
    restarts: int = 0
    _stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    _crashes: deque = dataclasses.field(default_factory=deque)
    _thread: threading.Thread | None = None

    def start(self) -> S3Supervisor:
        self._thread = threading.Thread(target=self._watch, name="s3-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the server is stopped on purpose, so that is not taken for a crash)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=120)

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_s):
            process = self.server.process
            if process is None or process.poll() is None:
                continue
            if not self._recover(process.returncode):
                return

    def _recover(self, returncode: int | None) -> bool:
        """Restart the dead server; return False (after on_fatal) when the restart budget is spent."""
        while not self._stopping.is_set():
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.window_s:
                self._crashes.popleft()
            log = self.server.data_dir / "weed.log"
            if len(self._crashes) > self.max_restarts:
                self.on_fatal(f"SeaweedFS (the S3 store) exited with {returncode} and has died {len(self._crashes)} "
                              f"times in {self.window_s:.0f} s (EVALUATOR_DEV_S3_MAX_RESTARTS={self.max_restarts});"
                              f" stopping rather than serving grants into a dead store. Its log: {log}")
                return False
            logger.warning("SeaweedFS (the S3 store) exited with %s; restarting it (%d of %d within %.0f s; log %s)",
                           returncode, len(self._crashes), self.max_restarts, self.window_s, log)
            try:
                self.server.start()
            except Exception as ex:  # noqa: BLE001 - a failed restart is one more crash, counted above
                logger.warning("restarting SeaweedFS failed: %s", ex)
                self.server.stop()
                returncode = self.server.process.returncode if self.server.process else None
                continue
            self.restarts += 1
            logger.warning("SeaweedFS is back on %s", self.server.endpoint_url)
            return True
        return False
