"""The lock-down every sandbox container is created with, and what a failed create means.

The cold path (runner.DockerSandbox) and the warm pool (pool.WarmPoolSandbox) create their
containers with exactly these options, so a warm container is as locked down as a cold one.
"""

from __future__ import annotations

import docker
import docker.errors
from docker.types import LogConfig

from evaluator.errors import InfrastructureError, SandboxError
from evaluator.sandbox.spec import Limits

SANDBOX_USER = "65534:65534"


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
