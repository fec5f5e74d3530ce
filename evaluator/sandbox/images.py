"""Framework -> image name, and the presence check a run makes (never a pull)."""

from __future__ import annotations

import docker
import docker.errors
import requests

from evaluator.config import Config
from evaluator.errors import FrameworkUnsupported, InfrastructureError, SandboxError
from evaluator.sandbox.frameworks import IMAGE_FOR_FRAMEWORK

# Manifest framework -> the image that serves it (images/<name>/Dockerfile).
FRAMEWORKS = dict(IMAGE_FOR_FRAMEWORK)
# Every image folder, in build order: the base first.
IMAGES = ("base", "sklearn", "onnx", "pytorch", "tensorflow")


def image_of(framework: str) -> str:
    """Return the image folder that serves a manifest framework."""
    if framework in IMAGES:
        return framework
    try:
        return FRAMEWORKS[framework]
    except KeyError:
        raise FrameworkUnsupported(
            f"framework {framework!r} is not supported; use one of {', '.join(sorted(FRAMEWORKS))}"
        ) from None


def image_name(framework: str, config: Config) -> str:
    """Return the runnable image name, e.g. evaluator-sklearn for xgboost."""
    return f"{config.image_prefix}{image_of(framework)}"


def resolve(client: docker.DockerClient, framework: str, config: Config) -> tuple[str, str]:
    """Return (name, image id) of the local image for a framework; never pulls."""
    name = image_name(framework, config)
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"image {name} is not built on this worker; run `evaluator images build {image_of(framework)}`"
        ) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as ex:
        raise InfrastructureError(f"Docker daemon unavailable: {ex}") from ex
    return name, image.id
