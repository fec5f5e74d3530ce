"""WarmPoolSandbox: single-use containers started before their run exists, each used once.

A cold run spends most of its time starting a container and importing the
framework (seconds for scikit-learn), work that does not depend on the run. The
pool does it ahead: per pooled image it keeps `size` containers created with the
exact options of the cold path (lockdown.container_options), started in the
in-image program's `--warm` mode, which imports the framework and blocks on a go
line on stdin. Each container's /model and /data are bind mounts of an empty
per-slot host folder: it holds no tenant data until it is handed a run. Then the
run's files are hard-linked (or copied) into the slot folder, the go line is
written, and the run is watched exactly like a cold one. Whatever happens, the
container and its folder are removed after that one run, and a background thread
starts a replacement. A container is never reused.

The replacement is started once the run it replaces is recorded (evaluator.after_run),
not when its sandbox step ends: starting a container and importing scikit-learn is a
second of CPU, which on a small host would be taken from that run's scoring and writes.
A run that finds no warm container while one is owed (its start is under way or held
back) waits for it rather than starting a cold one, and a waiting run lets a held-back
start go at once: that container was owed first, so it is ready first, and a cold start
beside it would double the CPU spent.

Runs whose limits or image the pool was not built for take the cold path.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from evaluator import after_run
from evaluator.errors import SandboxError
from evaluator.sandbox.daemon import DockerGone, docker_errors
from evaluator.sandbox.lockdown import container_options, create_failure
from evaluator.sandbox.runner import (
    _DOCKER_ERRORS,
    DEPLOYMENT_LABEL,
    POOL_LABEL,
    SLOT_LABEL,
    WORKER_LABEL,
    DockerSandbox,
    run_container_name,
)
from evaluator.sandbox.spec import Limits, SandboxResult, SandboxSpec
from evaluator.sandbox.streams import Streams

logger = logging.getLogger(__name__)

__all__ = ["POOL_LABEL", "WarmPoolSandbox", "pooled_images"]
REFILL_CHECK_S = 1.0
RETRY_AFTER_FAILURE_S = 10.0
OWED_WAIT_S = 60.0  # longest a run waits for a warm container being started before it starts a cold one


@dataclasses.dataclass
class Slot:
    """One warm container: its attached streams and its (empty until hand-over) host folder."""

    image: str
    container: object
    sock: object
    streams: Streams
    folder: Path

    def alive(self) -> bool:
        return self.streams.is_alive()  # the streams end when the container exits


class WarmPoolSandbox(DockerSandbox):
    """A DockerSandbox that hands runs of the pooled images and limits to warm containers."""

    def __init__(self, client: docker.DockerClient, *, deployment: str = "default", worker: str = "",
                 limits: Limits, images: dict[str, str], size: int, root: Path) -> None:
        """`images` maps an image name (evaluator-sklearn) to its folder name (sklearn), the warm argument."""
        super().__init__(client, deployment=deployment, worker=worker)
        self._limits = limits
        self._images = dict(images)
        self._size = size
        self._root = root
        self._ready: dict[str, collections.deque[Slot]] = {image: collections.deque() for image in images}
        self._busy = {image: 0 for image in images}  # slots handed a run whose sandbox step has not ended
        self._held = {image: 0 for image in images}  # replacements held back until their run is recorded
        self._waiting = {image: 0 for image in images}  # runs waiting in _take for a container owed
        self._failing = {image: False for image in images}  # the last start failed: no run waits for one
        self._changed = threading.Condition()
        self._closed = False
        self._filler: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> WarmPoolSandbox:
        """Start the background thread that keeps `size` warm containers per image."""
        with self._changed:
            if self._filler is None and self._size > 0:
                self._filler = threading.Thread(target=self._fill_loop, name="sandbox-pool", daemon=True)
                self._filler.start()
        return self

    def close(self) -> None:
        """Stop refilling and remove every idle warm container (worker shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._filler is not None:
            self._filler.join(timeout=60)
        with self._changed:
            idle = [slot for slots in self._ready.values() for slot in slots]
            for slots in self._ready.values():
                slots.clear()
        for slot in idle:
            self._discard(slot)
        super().close()  # the removals of finished runs still under way

    def ready(self, image: str) -> list[str]:
        """Return the ids of the live warm containers of an image (for tests and `evaluator dev`)."""
        with self._changed:
            return [slot.container.id for slot in self._ready.get(image, ()) if slot.alive()]  # type: ignore

    # --- the Sandbox protocol -------------------------------------------------------------

    def run(self, spec: SandboxSpec, *, should_cancel: Callable[[], bool] | None = None) -> SandboxResult:
        """Run the spec in a warm container when one fits, else cold (see DockerSandbox.run)."""
        slot = self._take(spec, should_cancel) if self._fits(spec) else None
        if slot is None:
            return super().run(spec, should_cancel=should_cancel)
        try:
            started = time.monotonic()
            if not self._claim(slot, spec):
                return super().run(spec, should_cancel=should_cancel)
            self._hand_over(slot, spec)
            try:
                slot.sock._sock.sendall((json.dumps(spec.env) + "\n").encode())  # type: ignore[attr-defined]
            except OSError:  # it died between the liveness check and now: nothing ran yet
                logger.info("Warm container %s died before its go line; running %s cold",
                            slot.container.short_id, spec.run_id)  # type: ignore[attr-defined]
                self._discard(slot)
                return super().run(spec, should_cancel=should_cancel)
            ready_s = time.monotonic() - started
            image_id = slot.container.attrs.get("Image", "")  # type: ignore[attr-defined]
            self._watch(slot.container, slot.streams, spec, started, should_cancel, image_id)
            return self._result(slot.container, slot.streams, spec, started, image_id, should_cancel,
                                ready_s=ready_s, warm=True)
        finally:
            with self._changed:  # the sandbox step is over: its replacement is owed, held until the run is recorded
                self._busy[slot.image] -= 1
                self._held[slot.image] += 1
                self._changed.notify_all()
            after_run.defer(lambda: self._let_go(slot.image))
            self._remove_later(lambda: self._stop(slot.container), lambda: self._discard(slot))

    # --- steps ----------------------------------------------------------------------------

    def _fits(self, spec: SandboxSpec) -> bool:
        return (self._size > 0 and spec.image in self._images and spec.limits == self._limits
                and all(str(key).startswith("EVALUATOR_") for key in spec.env))

    def _take(self, spec: SandboxSpec, should_cancel: Callable[[], bool] | None = None) -> Slot | None:
        """Pop a live warm container of the spec's image (waiting for one owed); None means cold.

        A dead one is discarded. When none is ready but the filler owes one (fewer than `size` are
        busy with runs and its starts are not failing), the run waits for it, up to OWED_WAIT_S.
        """
        deadline = time.monotonic() + OWED_WAIT_S
        while True:
            with self._changed:
                slots = self._ready[spec.image]
                self._waiting[spec.image] += 1
                self._changed.notify_all()  # the filler starts a held-back replacement for a waiting run
                try:
                    while not slots and self._owed(spec.image) and time.monotonic() < deadline:
                        if should_cancel is not None and should_cancel():
                            return None  # the cold path sees the cancel at once
                        self._changed.wait(timeout=0.1)
                finally:
                    self._waiting[spec.image] -= 1
                slot = slots.popleft() if slots else None
                if slot is not None:
                    self._busy[spec.image] += 1
            if slot is None or slot.alive():
                return slot
            self._discard(slot)
            with self._changed:
                self._busy[spec.image] -= 1
                self._changed.notify_all()

    def _owed(self, image: str) -> bool:
        """Whether the filler is starting (or about to start) a container of `image` (called under the lock)."""
        return (self._filler is not None and not self._closed and not self._failing[image]
                and self._busy[image] < self._size)

    def _let_go(self, image: str) -> None:
        """The run whose sandbox step ended is recorded: the filler may start its replacement."""
        with self._changed:
            self._held[image] -= 1
            self._changed.notify_all()

    def _missing(self, image: str, slots: collections.deque[Slot]) -> bool:
        """Whether the filler should start a container of `image` now (called under the lock)."""
        owed = self._prune(slots) + self._busy[image]
        # a start held back for a run still being recorded goes at once when a run waits for it
        return owed < self._size and (owed + self._held[image] < self._size or self._waiting[image] > 0)

    def _claim(self, slot: Slot, spec: SandboxSpec) -> bool:
        """Name the container after its run before any of the run's files reach it; False: it is gone, go cold.

        From then on the run's cancel, takeover and orphan sweeps find it (runner.run_containers),
        from any process of this Docker host, even if this worker dies the next instant.
        """
        name = run_container_name(spec.run_id)
        for _ in range(2):
            try:
                with docker_errors(f"warm container {slot.container.short_id} was not renamed"):  # type: ignore
                    slot.container.rename(name)  # type: ignore[attr-defined]
                return True
            except DockerGone:
                break
            except SandboxError as ex:  # 409: a previous attempt's container of this run still has the name
                logger.info("%s; removing the run's leftovers", ex)
                self.remove_leftovers(spec.run_id)
        self._discard(slot)
        return False

    def _hand_over(self, slot: Slot, spec: SandboxSpec) -> None:
        """Put the run's model and features in the slot's folders (hard links when the filesystem allows)."""
        for source, name in ((spec.model_dir, "model"), (spec.data_dir, "data")):
            shutil.copytree(source, slot.folder / name, symlinks=True, copy_function=_link_or_copy,
                            dirs_exist_ok=True)
            (slot.folder / name).chmod(0o755)

    def _fill_loop(self) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                missing = [image for image, slots in self._ready.items() if self._missing(image, slots)]
                if not missing:
                    self._changed.wait(timeout=REFILL_CHECK_S)
                    continue
            for image in missing:
                try:
                    slot = self._start_slot(image)
                except Exception as ex:  # the pool's loop boundary: Docker down, image missing; runs go cold
                    logger.warning("Could not start a warm %s sandbox (runs take the cold path): %s", image, ex)
                    with self._changed:
                        self._failing[image] = True
                        self._changed.notify_all()  # a run waiting for it goes cold now
                        self._changed.wait(timeout=RETRY_AFTER_FAILURE_S)
                    break
                with self._changed:
                    if self._closed:
                        self._discard(slot)
                        return
                    self._failing[image] = False
                    self._ready[image].append(slot)
                    self._changed.notify_all()  # a run waiting for it

    def _prune(self, slots: collections.deque[Slot]) -> int:
        """Discard the dead slots (called under the lock); return how many live ones remain."""
        for slot in [slot for slot in slots if not slot.alive()]:
            slots.remove(slot)
            logger.info("Warm container %s exited while idle; replacing it",
                        slot.container.short_id)  # type: ignore[attr-defined]
            threading.Thread(target=self._discard, args=(slot,), daemon=True).start()
        return len(slots)

    def _start_slot(self, image: str) -> Slot:
        folder = self._root / secrets.token_hex(16)  # opaque: Docker shows the host path in mountinfo
        self._root.parent.mkdir(parents=True, exist_ok=True)  # the work dir: no run may have made it yet
        for path in (self._root.parent, self._root, folder, folder / "model", folder / "data"):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        options = container_options(
            self._limits, env={},
            labels={POOL_LABEL: image, SLOT_LABEL: str(folder), DEPLOYMENT_LABEL: self._deployment,
                    WORKER_LABEL: self._worker},
            volumes={str(folder / "model"): {"bind": "/model", "mode": "ro"},
                     str(folder / "data"): {"bind": "/data", "mode": "ro"}})
        try:
            container = self._client.containers.create(image, command=["--warm", self._images[image]],
                                                       stdin_open=True, **options)
        except _DOCKER_ERRORS as ex:
            shutil.rmtree(folder, ignore_errors=True)
            raise create_failure(ex, image, self._limits) from ex
        try:
            sock = self._client.api.attach_socket(
                container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            getattr(sock, "_sock", sock).settimeout(None)
            streams = Streams(sock, self._limits)
            streams.start()
            container.start()
        except BaseException:
            self._remove(container)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Slot(image=image, container=container, sock=sock, streams=streams, folder=folder)

    def _discard(self, slot: Slot) -> None:
        """Remove a slot's container and folder; never raises (the run's result matters more)."""
        self._close_and_remove(slot.container, slot.sock)
        shutil.rmtree(slot.folder, ignore_errors=True)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def pooled_images(names: str, prefix: str) -> dict[str, str]:
    """Parse EVALUATOR_SANDBOX_POOL_IMAGES ("sklearn,onnx") into {image name: image folder}."""
    return {f"{prefix}{name}": name for name in (part.strip() for part in names.split(",")) if name}
