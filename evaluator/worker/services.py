"""Collaborators of the actors, built lazily once per worker process from the Config."""

from __future__ import annotations

import functools
from typing import Any

from evaluator.config import Config
from evaluator.storage.blobs import BlobStore

_config: Config | None = None


def configure(config: Config) -> None:
    """Use this Config (set by broker.setup, tests and `evaluator dev`) and forget built clients."""
    global _config
    _config = config
    blobs.cache_clear()
    sandbox.cache_clear()


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
    import docker

    from evaluator.sandbox.runner import DockerSandbox
    from evaluator.workers import worker_name

    return DockerSandbox(docker.from_env(timeout=120), deployment=current_config().deployment, worker=worker_name())
