"""Collaborators of the actors, built lazily once per worker process from the Config."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import dramatiq

from evaluator.config import Config
from evaluator.errors import ConfigInvalid
from evaluator.storage.blobs import BlobStore

_config: Config | None = None


def configure(config: Config) -> None:
    """Use this Config (set by broker.setup, tests and `evaluator dev`) and forget built clients."""
    global _config
    close_sandbox()
    _config = config
    blobs.cache_clear()


def current_config() -> Config:
    global _config
    if _config is None:
        _config = Config.from_env()
    return _config


@functools.lru_cache(maxsize=1)
def blobs() -> BlobStore:
    return BlobStore.from_config(current_config())


@functools.lru_cache(maxsize=1)
def sandbox() -> Any:
    """Return this process's sandbox, its runs counted for the heartbeat (sandboxes in use)."""
    from evaluator.worker.heartbeat import CountedSandbox

    return CountedSandbox(_build_sandbox())


def _build_sandbox() -> Any:
    """A warm pool when EVALUATOR_SANDBOX_POOL_SIZE > 0, else cold containers; or Kubernetes Jobs."""
    import docker

    from evaluator.sandbox.pool import WarmPoolSandbox, pooled_images
    from evaluator.sandbox.runner import DockerSandbox
    from evaluator.sandbox.spec import Limits
    from evaluator.workers import worker_name

    config = current_config()
    if config.sandbox_backend == "kubernetes":
        return kubernetes_sandbox(config)
    if config.sandbox_backend != "docker":
        raise ConfigInvalid(f"EVALUATOR_SANDBOX_BACKEND={config.sandbox_backend!r}: use docker or kubernetes")
    client = docker.from_env(timeout=120)
    images = pooled_images(config.sandbox_pool_images, config.image_prefix)
    if config.sandbox_pool_size <= 0 or not images:
        return DockerSandbox(client, deployment=config.deployment, worker=worker_name())
    return WarmPoolSandbox(client, deployment=config.deployment, worker=worker_name(),
                           limits=Limits.from_config(config), images=images, size=config.sandbox_pool_size,
                           root=Path(config.work_dir) / "pool").start()


def kubernetes_sandbox(config: Config) -> Any:
    """One Job per run attempt in config.k8s_namespace, behind the same interface as DockerSandbox."""
    from evaluator.sandbox.kubernetes_manifests import Placement
    from evaluator.sandbox.kubernetes_runner import KubernetesSandbox
    from evaluator.workers import worker_name

    placement = Placement(namespace=config.k8s_namespace, deployment=config.deployment, worker=worker_name(),
                          runtime_class=config.k8s_runtime_class, ttl_after_finished_s=config.k8s_ttl_after_finished_s,
                          store_cidr=config.k8s_store_cidr, store_port=config.k8s_store_port)
    built = KubernetesSandbox.from_kubeconfig(blobs(), bucket=config.results_bucket, placement=placement,
                                              kubeconfig=config.k8s_kubeconfig)
    built.ensure_network_policy()
    return built


def close_sandbox() -> None:
    """Remove this process's idle warm containers (worker shutdown, reconfiguration); a no-op when none."""
    if sandbox.cache_info().currsize:
        built = sandbox()
        if hasattr(built, "close"):
            built.close()
    sandbox.cache_clear()


class SandboxPool(dramatiq.Middleware):
    """Start the warm pool and the scoring server when a worker process boots; remove them when it stops."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from evaluator.scoring_standby import STANDBY

        sandbox()
        STANDBY.keep(current_config())

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from evaluator.scoring_standby import STANDBY

        close_sandbox()
        STANDBY.close()
