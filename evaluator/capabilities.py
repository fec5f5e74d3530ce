"""Run queues by capability: a benchmark's limits pick the queue, a worker consumes what its host can serve.

Three run queues: `cpu` (every run of a default benchmark), `runsc` (limits.runtime
is gVisor's runsc) and `gpu` (limits.gpus > 0). A worker serves the queues of its
host's capabilities, EVALUATOR_WORKER_CAPABILITIES or, when that is empty, what its
Docker daemon lists: cpu always, runsc when the runtime is registered, gpu when
NVIDIA's is. So a run that needs gVisor or a GPU waits for a host that has it
instead of failing on the first worker that happens to pick it up.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterable, Mapping

from evaluator.config import Config
from evaluator.errors import ConfigInvalid
from evaluator.settings import BenchmarkLimits

logger = logging.getLogger(__name__)

CPU, RUNSC, GPU = "cpu", "runsc", "gpu"
RUN_QUEUES = (CPU, RUNSC, GPU)


def queue_for(limits: BenchmarkLimits) -> str:
    """Return the run queue of a benchmark's runs: `gpu` when they need GPUs, `runsc` for gVisor, else `cpu`."""
    if limits.gpus:
        return GPU
    if limits.runtime == RUNSC:
        return RUNSC
    return CPU


def queue_of_run(run_id: str) -> str:
    """Return the run queue of a run (its benchmark's limits); `cpu` for a run that does not exist.

    A message for a missing run is a no-op wherever it lands, so it goes where every host consumes.
    """
    from evaluator.settings import limits_of
    from evaluator.storage.models import Benchmark, Run

    try:
        key = uuid.UUID(str(run_id))
    except ValueError:
        return CPU
    benchmark = (Benchmark.select(Benchmark.id, Benchmark.limits).join(Run).where(Run.id == key).first())
    return CPU if benchmark is None else queue_for(limits_of(benchmark))


def parse_capabilities(raw: str) -> frozenset[str]:
    """Parse EVALUATOR_WORKER_CAPABILITIES (a comma list of cpu, runsc, gpu); refuse unknown names."""
    names = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = sorted(names - set(RUN_QUEUES))
    if unknown or not names:
        raise ConfigInvalid(f"EVALUATOR_WORKER_CAPABILITIES={raw!r}: use a comma list of {', '.join(RUN_QUEUES)}")
    return names


def detect_capabilities(docker_info: Mapping[str, Any]) -> frozenset[str]:
    """What a host with this Docker daemon (`docker info`) serves: cpu, and runsc / gpu when their runtime is listed."""
    runtimes = set((docker_info.get("Runtimes") or {}).keys())
    found = {CPU}
    if RUNSC in runtimes:
        found.add(RUNSC)
    if "nvidia" in runtimes:
        found.add(GPU)
    return frozenset(found)


def host_capabilities(config: Config, docker_info: Callable[[], Mapping[str, Any]]) -> tuple[frozenset[str], str]:
    """Return this host's capabilities and where they came from (`configured` or `detected`).

    Detection asks the Docker daemon (`docker_info`); an unreachable one, or the
    Kubernetes backend (the cluster places the pods), leaves cpu only.
    """
    if config.worker_capabilities.strip():
        return parse_capabilities(config.worker_capabilities), "configured"
    if config.sandbox_backend != "docker":
        return frozenset({CPU}), "detected"
    try:
        info = docker_info()
    except Exception as ex:  # noqa: BLE001 - docker's errors vary (socket, API, timeout): cpu only, said loudly
        logger.warning("Could not ask Docker which runtimes it has (%s): serving the cpu queue only", ex)
        return frozenset({CPU}), "detected"
    return detect_capabilities(info), "detected"


def served_queues(declared: Iterable[str], capabilities: frozenset[str]) -> set[str]:
    """The queues a worker consumes: every declared queue but the run queues its host cannot serve."""
    return {queue for queue in declared if queue not in RUN_QUEUES or queue in capabilities}
