"""DockerSandbox: one fresh, locked-down container per run; removed whatever happens.

The container is created with lockdown.container_options (the warm pool uses the same), attached
before it starts, and read by streams.Streams: the log on stderr, the predictor's report on stdout
(see evaluator.sandbox.streams for how output leaves the container without trusting the host disk).

A complete report of status 0 is the run's result at once: the container's exit and
its removal are left to a background thread (settle() waits for them), off the run's
critical path. Any other ending still waits for the container to end (an OOM kill
is told apart by Docker's state).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from evaluator import after_run, workers
from evaluator.errors import InfrastructureError, OutOfMemory, RunCancelled, SandboxError, SandboxTimeout
from evaluator.sandbox.daemon import DOCKER_ERRORS, DockerGone, docker_errors
from evaluator.sandbox.lockdown import container_options, create_failure
from evaluator.sandbox.spec import SandboxResult, SandboxSpec
from evaluator.sandbox.streams import Streams, split_status

logger = logging.getLogger(__name__)

RUN_LABEL = "evaluator.run_id"
DEPLOYMENT_LABEL = "evaluator.deployment"  # sweeps touch only containers of their own deployment
WORKER_LABEL = "evaluator.worker"  # the lease owner that started it: a container of a dead attempt is an orphan
POOL_LABEL = "evaluator.pool"  # a warm pool container (the pooled image); it has no run label
SLOT_LABEL = "evaluator.pool_slot"  # its host slot folder, removed with it (the run's files are linked there)
# NOTE: labels are fixed at create time, and a warm container is created before its run exists: at hand-over
# it is renamed after its run instead, and every run-scoped lookup (cancel, takeover, sweeps) matches that too.
RUN_NAME_PREFIX = "evaluator-run-"
CANCEL_POLL_S = 0.5
_DOCKER_ERRORS = DOCKER_ERRORS


@dataclasses.dataclass(frozen=True)
class SandboxContainer:
    """A sandbox container of this deployment, as a sweep sees it."""

    id: str
    run_id: str
    worker: str
    status: str  # Docker's: created, running, exited, ...


def run_container_name(run_id: str) -> str:
    """Return the name a warm container takes when it is handed a run (Docker names are unique per host)."""
    return f"{RUN_NAME_PREFIX}{run_id}"


def run_id_of(container) -> str:  # type: ignore[no-untyped-def]
    """Return the run a sandbox container serves: its label (cold), its name (handed-over warm), or ""."""
    labels = container.labels or {}
    if labels.get(RUN_LABEL):
        return labels[RUN_LABEL]
    name = container.name or ""
    return name[len(RUN_NAME_PREFIX):] if POOL_LABEL in labels and name.startswith(RUN_NAME_PREFIX) else ""


def run_containers(client: docker.DockerClient, run_id: str, *, all: bool = True) -> list:
    """Return a run's containers in any deployment: cold ones by label, a handed-over warm one by name."""
    # ignore_removed: a container removed between the listing and its inspection is simply not there
    labelled = client.containers.list(all=all, filters={"label": [f"{RUN_LABEL}={run_id}"]}, ignore_removed=True)
    found = {c.id: c for c in labelled}
    name = run_container_name(run_id)
    for container in client.containers.list(all=all, filters={"name": name, "label": [POOL_LABEL]},
                                            ignore_removed=True):
        if container.name == name:  # the filter matches substrings
            found[container.id] = container
    return list(found.values())


class DockerSandbox:
    """Run a SandboxSpec in a fresh container; never pulls or builds an image.

    Containers carry the run id, the deployment and the worker that started
    them; a sweep here touches only this deployment's containers.
    """

    def __init__(self, client: docker.DockerClient, *, deployment: str = "default", worker: str = "") -> None:
        self._client = client
        self._deployment = deployment
        self._worker = worker
        self._removals: set[threading.Thread] = set()
        self._removals_lock = threading.Lock()

    def _labels(self, run_id: str | None = None) -> list[str]:
        """Filter one run's containers (a run id is unique across deployments), or all of this deployment's."""
        return [f"{RUN_LABEL}={run_id}"] if run_id else [RUN_LABEL, f"{DEPLOYMENT_LABEL}={self._deployment}"]

    def run(self, spec: SandboxSpec, *, should_cancel: Callable[[], bool] | None = None) -> SandboxResult:
        """Run the image's program over /model and /data and collect its predictions.

        Raises:
            SandboxTimeout, OutOfMemory, RunCancelled, SandboxError: the participant's run
                failed; the exception carries `.log` (bytes) and `.image_id`.
            InfrastructureError: the Docker daemon could not be reached (retry later).
        """
        started = time.monotonic()
        self.remove_leftovers(spec.run_id)  # a previous attempt whose worker died mid-run
        container = self._create(spec)
        image_id = container.attrs.get("Image", "")
        streams = None
        sock = None
        try:
            with docker_errors("the sandbox container could not start", refusal_fails_run=True):
                sock = self._client.api.attach_socket(container.id, params={"stdout": 1, "stderr": 1, "stream": 1})
                getattr(sock, "_sock", sock).settimeout(None)  # a quiet model may think for hours
                streams = Streams(sock, spec.limits)
                streams.start()
                container.start()
            ready_s = time.monotonic() - started
            self._watch(container, streams, spec, started, should_cancel, image_id)
            return self._result(container, streams, spec, started, image_id, should_cancel, ready_s=ready_s)
        finally:
            self._remove_later(lambda: self._stop(container), lambda: self._close_and_remove(container, sock))

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the containers of finished runs are removed; False if some still are not after `timeout`.

        Inside a run's scope (evaluator.after_run) a removal waits for the run to be recorded: settle after it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._removals_lock:
                pending = list(self._removals)
            if not pending:
                return True
            for thread in pending:
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
                if thread.is_alive():
                    return False

    def close(self) -> None:
        """Worker shutdown: wait for the removals still under way."""
        self.settle(timeout=60)

    def _remove_later(self, stop: Callable[[], None], remove: Callable[[], None]) -> None:
        """In a thread of its own, call `stop` (it kills a finished run's container) now, then `remove`.

        The run's result is taken already; the container's exit and removal (tens to hundreds of
        milliseconds of Docker work) need not delay it. The kill is at once: a model that reported its
        predictions may have left a process running, and nothing of it may outlive its result. The
        removal (closing the streams, Docker's teardown of the container) waits, in a worker's run,
        until the run is recorded (evaluator.after_run). A worker that dies before this ends leaves a
        container the run's takeover and the orphan sweeps remove, as for a worker killed mid-run.
        """
        recorded = threading.Event()

        def tracked() -> None:
            try:
                stop()
                recorded.wait()
                remove()
            finally:
                with self._removals_lock:
                    self._removals.discard(thread)

        thread = threading.Thread(target=tracked, name="sandbox-removal", daemon=True)
        with self._removals_lock:
            self._removals.add(thread)
        thread.start()
        after_run.defer(recorded.set)

    def _stop(self, container) -> None:  # type: ignore[no-untyped-def]
        """Kill a finished run's container if it still runs; never raises (its removal follows)."""
        try:
            with docker_errors(f"sandbox container {container.short_id} was not stopped"):
                container.kill()
        except DockerGone:
            pass
        except (SandboxError, InfrastructureError) as ex:  # 409: it exited already
            logger.debug("%s", ex)

    def _close_and_remove(self, container, sock) -> None:  # type: ignore[no-untyped-def]
        """Close a run's attached streams and remove its container; never raises."""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._remove(container)

    def kill_run(self, run_id: str) -> int:
        """Kill every container of a run (e.g. on cancel from another process); return how many."""
        killed = 0
        with docker_errors("the run's containers could not be listed"):
            containers = run_containers(self._client, run_id, all=False)
        for container in containers:
            try:
                with docker_errors(f"container {container.short_id} of run {run_id} was not killed",
                                   refusal_fails_run=True):
                    container.kill()
                killed += 1
            except SandboxError as ex:  # it exited meanwhile
                logger.info("%s", ex)
        return killed

    def remove_leftovers(self, run_id: str | None = None) -> int:
        """Remove containers of one run (any state), or every exited one of this deployment; return how many.

        A worker killed mid-run never reaches its `finally`; the attempt that takes
        the run over calls this for its run, and a worker's boot sweep with no run id.
        """
        with docker_errors("the sandbox containers could not be listed"):
            if run_id:
                containers = run_containers(self._client, run_id)
            else:
                containers = self._client.containers.list(
                    all=True, filters={"label": self._labels(), "status": "exited"},
                    ignore_removed=True) + self._orphaned_pool()
        for container in containers:
            self._remove(container)
        return len(containers)

    def containers(self) -> list[SandboxContainer]:
        """List this deployment's sandbox containers on this Docker host, in any state."""
        with docker_errors("the sandbox containers could not be listed"):
            found = self._client.containers.list(all=True, filters={"label": self._labels()}, ignore_removed=True)
            pooled = self._client.containers.list(
                all=True, filters={"label": [POOL_LABEL, f"{DEPLOYMENT_LABEL}={self._deployment}"]},
                ignore_removed=True)
        # A warm container handed a run is that run's; an idle one counts (run-less) only once it is orphaned.
        orphaned = {c.id for c in self._orphaned_pool(pooled)}
        found += [c for c in pooled if run_id_of(c) or c.id in orphaned]
        return [SandboxContainer(id=c.id, run_id=run_id_of(c), worker=c.labels.get(WORKER_LABEL, ""),
                                 status=c.status) for c in found]

    def _orphaned_pool(self, pooled: list | None = None) -> list:
        """Idle warm containers of this deployment that no live pool will hand out: a gone worker's, or exited."""
        if pooled is None:
            pooled = self._client.containers.list(
                all=True, filters={"label": [POOL_LABEL, f"{DEPLOYMENT_LABEL}={self._deployment}"]},
                ignore_removed=True)
        return [c for c in pooled if not run_id_of(c) and (
            workers.is_gone(c.labels.get(WORKER_LABEL)) or
            (c.status == "exited" and c.labels.get(WORKER_LABEL) != self._worker))]

    def remove_container(self, container_id: str) -> None:
        """Kill and remove one container (a sweep found it orphaned); gone already is fine."""
        try:
            with docker_errors(f"container {container_id[:12]} could not be found"):
                container = self._client.containers.get(container_id)
        except DockerGone:
            return
        self._remove(container)

    # --- steps ---------------------------------------------------------------------------

    def _create(self, spec: SandboxSpec):  # type: ignore[no-untyped-def]
        options = container_options(
            spec.limits, env=spec.env,
            labels={RUN_LABEL: spec.run_id, DEPLOYMENT_LABEL: self._deployment, WORKER_LABEL: self._worker},
            volumes={str(spec.model_dir): {"bind": "/model", "mode": "ro"},
                     str(spec.data_dir): {"bind": "/data", "mode": "ro"}})
        try:
            return self._client.containers.create(spec.image, **options)
        except _DOCKER_ERRORS as ex:
            raise create_failure(ex, spec.image, spec.limits) from ex

    def _watch(self, container, streams: Streams, spec: SandboxSpec, started: float,  # type: ignore[no-untyped-def]
               should_cancel: Callable[[], bool] | None, image_id: str) -> None:
        deadline = started + spec.limits.timeout_s
        next_cancel_check = 0.0
        while True:
            ended = streams.finished.wait(timeout=0.05)
            now = time.monotonic()
            if streams.overflow:
                self._kill(container, streams)
                raise SandboxError(f"the sandbox wrote more than {spec.limits.output_bytes} bytes of predictions",
                                   log=streams.log.getvalue(), image_id=image_id)
            if now >= deadline:
                self._kill(container, streams)
                raise SandboxTimeout(
                    f"the model ran past its {spec.limits.timeout_s:g}s limit; the container was killed",
                    log=streams.log.getvalue(), image_id=image_id)
            if should_cancel is not None and now >= next_cancel_check:
                next_cancel_check = now + CANCEL_POLL_S
                if should_cancel():
                    self._kill(container, streams)
                    raise RunCancelled("the run was cancelled; the container was killed", log=streams.log.getvalue(),
                                       image_id=image_id)
            if ended:
                return

    def _result(self, container, streams: Streams, spec: SandboxSpec, started: float,  # type: ignore[no-untyped-def]
                image_id: str, should_cancel: Callable[[], bool] | None, *, ready_s: float = 0.0,
                warm: bool = False) -> SandboxResult:
        status, predictions = split_status(streams.stdout)
        if streams.reported and status == 0:  # the whole result, before the container's end: nothing to wait for
            return SandboxResult(exit_code=status, predictions=predictions, log=streams.log.getvalue(),
                                 image_id=image_id, duration_s=round(time.monotonic() - started, 3),
                                 ready_s=round(ready_s, 3), warm=warm)
        with docker_errors("the sandbox container's end could not be read"):
            container.wait(timeout=30)
            container.reload()
        streams.join(timeout=5)  # the log's last lines
        state = container.attrs.get("State", {})
        log = streams.log.getvalue()
        if state.get("OOMKilled") and status != 0:
            raise OutOfMemory(f"the model used more than {spec.limits.memory} of memory and was killed", log=log,
                              image_id=image_id)
        if status is None and should_cancel is not None and should_cancel():  # killed by kill_run()
            raise RunCancelled("the run was cancelled; the container was killed", log=log, image_id=image_id)
        if status is None:
            raise SandboxError(
                f"the sandbox exited with code {state.get('ExitCode')} before its program reported a status",
                log=log, image_id=image_id)
        return SandboxResult(exit_code=status, predictions=predictions, log=log, image_id=image_id,
                             duration_s=round(time.monotonic() - started, 3), ready_s=round(ready_s, 3), warm=warm)

    def _kill(self, container, streams: Streams) -> None:  # type: ignore[no-untyped-def]
        try:
            with docker_errors(f"container {container.short_id} was not killed", refusal_fails_run=True):
                container.kill()
        except SandboxError as ex:  # it may have exited meanwhile
            logger.debug("%s", ex)
        streams.join(timeout=5)

    def _remove(self, container) -> None:  # type: ignore[no-untyped-def]
        """Remove a container, and a warm one's slot folder (it may hold the run's linked files)."""
        try:
            with docker_errors(f"sandbox container {container.short_id} was not removed"):
                container.remove(force=True)
        except DockerGone:
            pass
        except (SandboxError, InfrastructureError) as ex:
            logger.warning("%s", ex)
            return
        slot = _slot_folder(container)
        if slot is not None:
            shutil.rmtree(slot, ignore_errors=True)


def _slot_folder(container) -> Path | None:  # type: ignore[no-untyped-def]
    """Return a warm container's slot folder: its label, when it is the parent of the container's bind mounts."""
    labels = container.labels or {}
    if POOL_LABEL not in labels or not labels.get(SLOT_LABEL):
        return None
    slot = Path(labels[SLOT_LABEL])
    sources = {Path(m.get("Source", "")).parent for m in container.attrs.get("Mounts", []) if m.get("Type") == "bind"}
    return slot if sources == {slot} else None


def connect(timeout: int = 120) -> docker.DockerClient:
    """Return a client of the local Docker Engine (DOCKER_HOST honoured), or raise InfrastructureError."""
    with docker_errors("the worker cannot reach it"):
        client = docker.from_env(timeout=timeout)
        client.ping()
    return client
