"""What one sandbox run is: the image, the two read-only mounts, the limits and the run id."""

from __future__ import annotations

import dataclasses
import math
import pathlib

from evaluator.config import Config
from evaluator.settings import BenchmarkLimits

# Host tasks a runtime needs beyond the model's own, added to the pids limit: gVisor's Sentry and its
# ptrace stubs are threads of the container's cgroup (~50 for an idle Python under ptrace, and its Go
# runtime adds threads under load); without room for them a guest fork bomb kills the Sentry first.
RUNTIME_PIDS_OVERHEAD = {"runsc": 128}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource caps of one container; the kernel enforces all but the wall clock."""

    timeout_s: float = 600.0
    memory: str = "2g"  # memory and memory+swap both: no swap at all
    cpus: float = 1.0
    pids: int = 256
    output_bytes: int = 256 * 1024 * 1024  # size of the /output tmpfs
    log_bytes: int = 64 * 1024  # head + tail of the log we keep
    tmp_bytes: int = 256 * 1024 * 1024  # size of the /tmp tmpfs (it also counts against memory)
    # /dev/shm: enough for multiprocessing's semaphores and small shared arrays, noexec, and
    # counted against memory too (joblib falls back to /tmp when it is this small).
    shm_bytes: int = 16 * 1024 * 1024
    runtime: str = ""  # a Docker runtime name (e.g. "runsc" for gVisor); empty: the daemon's default
    gpus: int = 0  # GPUs handed to the sandbox: a Docker device request, nvidia.com/gpu on Kubernetes

    @property
    def nano_cpus(self) -> int:
        return int(self.cpus * 1_000_000_000)

    @property
    def host_pids(self) -> int:
        """The container's pids limit: the model's `pids`, plus what its runtime itself runs there."""
        return self.pids + RUNTIME_PIDS_OVERHEAD.get(self.runtime, 0)

    @property
    def threads(self) -> int:
        """Return the thread count a framework should use under the CPU cap."""
        return max(1, math.ceil(self.cpus))

    @classmethod
    def from_config(cls, config: Config, benchmark: BenchmarkLimits | None = None) -> Limits:
        """The config's defaults, with what the benchmark sets of its own over them."""
        own = benchmark or BenchmarkLimits()

        def pick(value, default):  # type: ignore[no-untyped-def]
            return default if value is None else value

        return cls(
            timeout_s=float(pick(own.timeout_s, config.sandbox_timeout_s)),
            memory=str(pick(own.memory, config.sandbox_memory)),
            cpus=float(pick(own.cpus, config.sandbox_cpus)),
            pids=int(pick(own.pids, config.sandbox_pids)),
            output_bytes=int(config.sandbox_output_bytes),
            log_bytes=int(config.sandbox_log_bytes),
            tmp_bytes=int(config.sandbox_tmp_bytes),
            runtime=str(pick(own.runtime, config.sandbox_runtime)),
            gpus=int(pick(own.gpus, config.sandbox_gpus)),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SandboxSpec:
    """One run: `model_dir` is mounted at /model and `data_dir` at /data, both read-only."""

    image: str
    model_dir: pathlib.Path
    data_dir: pathlib.Path
    limits: Limits
    run_id: str
    env: dict = dataclasses.field(default_factory=dict)
    attempt: int = 1  # the run's attempt: a Kubernetes Job is named from run id and attempt


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """What a finished container handed back; `exit_code` is the in-image program's status."""

    exit_code: int
    predictions: bytes | None
    log: bytes
    image_id: str
    duration_s: float
    ready_s: float = 0.0  # from run() to the program's start: container created and started, or a warm one handed over
    warm: bool = False  # a warm pool container served it
