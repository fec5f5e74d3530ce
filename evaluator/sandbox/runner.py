"""DockerSandbox: one fresh, locked-down container per run; removed whatever happens.

How output leaves the container without trusting the host disk or needing any
privilege: /output is a tmpfs sized by the limits (the kernel caps it, and its
pages count against the memory limit). The image's entrypoint runs the predictor
with both of its streams on the container's stderr; the predictor writes its report
on stdout as soon as it is done: "<status> <length>\n" and exactly that many bytes of
/output/predictions.parquet (an older image, or the entrypoint when the predictor
died first, writes "<status>\n" and the bytes up to the container's end).
We attach to the container before starting it and demultiplex the two streams:
stderr into a capped head+tail log, stdout into a buffer we stop reading past the
output cap. Nothing the container says is parsed beyond that status line.

A complete report of status 0 is the run's result at once: the container's exit and
its removal are left to a background thread (settle() waits for them), off the run's
critical path. Any other ending still waits for the container to end (an OOM kill
is told apart by Docker's state).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import docker
import docker.errors
from docker.types import LogConfig
from docker.utils.socket import frames_iter

from evaluator import workers
from evaluator.errors import InfrastructureError, OutOfMemory, RunCancelled, SandboxError, SandboxTimeout
from evaluator.sandbox.daemon import DOCKER_ERRORS, DockerGone, docker_errors
from evaluator.sandbox.spec import Limits, SandboxResult, SandboxSpec

logger = logging.getLogger(__name__)

RUN_LABEL = "evaluator.run_id"
DEPLOYMENT_LABEL = "evaluator.deployment"  # sweeps touch only containers of their own deployment
WORKER_LABEL = "evaluator.worker"  # the lease owner that started it: a container of a dead attempt is an orphan
POOL_LABEL = "evaluator.pool"  # a warm pool container (the pooled image); it has no run label
SLOT_LABEL = "evaluator.pool_slot"  # its host slot folder, removed with it (the run's files are linked there)
# NOTE: labels are fixed at create time, and a warm container is created before its run exists: at hand-over
# it is renamed after its run instead, and every run-scoped lookup (cancel, takeover, sweeps) matches that too.
RUN_NAME_PREFIX = "evaluator-run-"
SANDBOX_USER = "65534:65534"
CANCEL_POLL_S = 0.5
_STDOUT = 1
_DOCKER_ERRORS = DOCKER_ERRORS


class LogCapture:
    """Keep the first and last `limit // 2` bytes of a stream, and count the rest."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_bytes = 0
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail.append(data)
        self._tail_bytes += len(data)
        while self._tail_bytes - len(self._tail[0]) >= self._half:
            self._tail_bytes -= len(self._tail.popleft())

    def getvalue(self) -> bytes:
        tail = b"".join(self._tail)[-self._half:]
        omitted = self.total - len(self._head) - len(tail)
        if omitted <= 0:
            return bytes(self._head) + tail
        return bytes(self._head) + f"\n[... {omitted} bytes of log omitted ...]\n".encode() + tail


class _Streams(threading.Thread):
    """Read the attached container streams until the container closes them, or its report is complete."""

    def __init__(self, sock, limits: Limits) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name="sandbox-streams", daemon=True)
        self._sock = sock
        self._limit = limits.output_bytes
        self._cap = limits.output_bytes + 32  # the status line, then at most the tmpfs size
        self._expected: int | None = None  # the whole report's size once its status line gave a length
        self.log = LogCapture(limits.log_bytes)
        self.stdout = bytearray()
        self.overflow = False
        self.reported = False  # the report and the whole log arrived: the result is complete, what follows ignored
        self.finished = threading.Event()  # reported, or the streams ended
        self.error: BaseException | None = None
        self._report_whole = False  # a length-prefixed report arrived whole
        self._log_whole = False  # the predictor's last log line (END_OF_LOG) arrived
        self._log_end = b""  # the last bytes of the log, for a mark split across frames

    def run(self) -> None:
        try:
            for stream, data in frames_iter(self._sock, tty=False):
                if stream != _STDOUT:
                    self.log.write(data)
                    self._look_for_log_end(data)
                elif not self._report_whole:
                    self._take(data)
        except (OSError, ValueError) as ex:  # the socket closes under us when the container is killed
            self.error = ex
        finally:
            self.finished.set()

    def _look_for_log_end(self, data: bytes) -> None:
        """The two streams are separate pipes: the log's end may come after the report, so both are awaited."""
        if self._log_whole:
            return
        window = self._log_end + data
        if END_OF_LOG in window:
            self._log_whole = True
            self._complete()
        self._log_end = window[-len(END_OF_LOG):]

    def _complete(self) -> None:
        if self._report_whole and self._log_whole:
            self.reported = True
            self.finished.set()

    def _take(self, data: bytes) -> None:
        if len(self.stdout) + len(data) > self._cap:
            self.overflow = True
            self.finished.set()
            return
        self.stdout += data
        if self._expected is None:
            line, newline, _ = bytes(self.stdout[:_STATUS_LINE_MAX]).partition(b"\n")
            length = _declared_length(line) if newline else None
            if length is not None and length > self._limit:
                self.overflow = True
                self.finished.set()
                return
            if length is not None:
                self._expected = len(line) + 1 + length
        if self._expected is not None and len(self.stdout) >= self._expected:
            del self.stdout[self._expected:]  # the entrypoint's own "<status>\n" after the report
            self._report_whole = True
            self._complete()


_STATUS_LINE_MAX = 32
# The predictor's last log line, written just before its report (images/base/evaluator_predict.py).
# A model that prints it early only cuts its own log short.
END_OF_LOG = b"[evaluator] end of log\n"


def _declared_length(line: bytes) -> int | None:
    """The <length> of a "<status> <length>" line; None for the bare "<status>" of the older report."""
    parts = line.split(b" ")
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


def _split_status(stdout: bytes | bytearray) -> tuple[int | None, bytes | None]:
    """Parse a report: "<status> <length>\n" + that many bytes (the rest ignored), or "<status>\n" + the rest."""
    line, newline, rest = bytes(stdout[:_STATUS_LINE_MAX]).partition(b"\n")
    if not newline:
        return None, None
    status_text, _, _ = line.partition(b" ")
    try:
        status = int(status_text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    length = _declared_length(line)
    predictions = bytes(stdout[len(line) + 1:] if length is None else stdout[len(line) + 1:len(line) + 1 + length])
    return status, predictions or None


def container_options(limits: Limits, *, env: dict, labels: dict, volumes: dict) -> dict:
    """Return every lock-down setting of a sandbox container: the cold path and the warm pool share it."""
    threads = str(limits.threads)
    return dict(
        environment={
            "EVALUATOR_ROW_ID_COLUMN": "row_id",
            "EVALUATOR_REPORT": "length",  # the predictor reports "<status> <length>" as soon as it is done
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1",
            **env,
        },
        labels=labels,
        network_mode="none",
        network_disabled=True,
        read_only=True,
        user=SANDBOX_USER,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ipc_mode="private",
        cgroupns="private",  # /proc/self/cgroup and the cgroup mounts then name no container id
        mem_limit=limits.memory,
        memswap_limit=limits.memory,
        nano_cpus=limits.nano_cpus,
        pids_limit=limits.host_pids,
        # msgqueue 0: no POSIX message queue can hold a byte (mq_open needs no /dev/mqueue).
        ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0),
                 docker.types.Ulimit(name="msgqueue", soft=0, hard=0)],
        tmpfs={
            "/tmp": f"rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777",
            "/output": f"rw,nosuid,nodev,size={limits.output_bytes},mode=1777",
            # Replace Docker's 64 MiB /dev/shm and its writable mqueue filesystem (a mount of
            # ours at either path makes Docker skip its own): small and noexec, and read-only.
            "/dev/shm": f"rw,nosuid,nodev,noexec,size={limits.shm_bytes},mode=1777",
            "/dev/mqueue": "ro,nosuid,nodev,noexec,size=4k,mode=0555",
        },
        volumes=volumes,
        # Everything is read through the attached streams; this file only bounds the daemon's copy.
        log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        hostname="sandbox",
        working_dir="/tmp",
        runtime=limits.runtime or None,  # None: the daemon's default (runc)
        # NVIDIA's container toolkit serves this request; none is made without GPUs.
        device_requests=[docker.types.DeviceRequest(count=limits.gpus, capabilities=[["gpu"]])]
        if limits.gpus else None,
    )


def create_failure(ex: BaseException, image: str, limits: Limits) -> Exception:
    """Translate a failed container create into the error a run records."""
    if isinstance(ex, docker.errors.ImageNotFound):
        framework = image.rsplit("-", 1)[-1].split(":")[0]
        return SandboxError(f"image {image} is not built on this worker; run `evaluator images build {framework}`")
    if isinstance(ex, docker.errors.APIError):
        explanation = str(ex.explanation or ex)
        if limits.runtime and "runtime" in explanation.lower():
            return SandboxError(
                f"the container runtime {limits.runtime!r} is not registered with this worker's Docker; install it "
                f"(`apt-get install runsc` for gVisor) and register it with scripts/machine.sh, or unset "
                f"EVALUATOR_SANDBOX_RUNTIME / the benchmark's limits.runtime")
        if ex.status_code is not None and ex.status_code < 500:
            return SandboxError(f"the sandbox container could not be created: {explanation}")
        return InfrastructureError(f"Docker daemon error: {explanation}")
    return InfrastructureError(f"Docker daemon unavailable: {ex}")


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
                streams = _Streams(sock, spec.limits)
                streams.start()
                container.start()
            ready_s = time.monotonic() - started
            self._watch(container, streams, spec, started, should_cancel, image_id)
            return self._result(container, streams, spec, started, image_id, should_cancel, ready_s=ready_s)
        finally:
            self._remove_later(container, sock)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the containers of finished runs are removed; False if some still are not after `timeout`."""
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

    def _remove_later(self, container, sock, then: Callable[[], None] | None = None) -> None:  # type: ignore
        """Close a finished run's streams and remove its container in a thread of its own, then call `then`.

        The run's result is taken already; the container's exit and removal (tens to hundreds of
        milliseconds of Docker work) need not delay it. A worker that dies before this ends leaves a
        container the run's takeover and the orphan sweeps remove, as for a worker killed mid-run.
        """
        def remove() -> None:
            try:
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
                self._remove(container)
                if then is not None:
                    then()
            finally:
                with self._removals_lock:
                    self._removals.discard(thread)

        thread = threading.Thread(target=remove, name="sandbox-removal", daemon=True)
        with self._removals_lock:
            self._removals.add(thread)
        thread.start()

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

    def _watch(self, container, streams: _Streams, spec: SandboxSpec, started: float,  # type: ignore[no-untyped-def]
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

    def _result(self, container, streams: _Streams, spec: SandboxSpec, started: float,  # type: ignore[no-untyped-def]
                image_id: str, should_cancel: Callable[[], bool] | None, *, ready_s: float = 0.0,
                warm: bool = False) -> SandboxResult:
        status, predictions = _split_status(streams.stdout)
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

    def _kill(self, container, streams: _Streams) -> None:  # type: ignore[no-untyped-def]
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
