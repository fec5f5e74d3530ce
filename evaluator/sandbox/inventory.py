"""What each framework image holds: built or not, current with the packaged build context, its packages.

A bundle runs with exactly the packages of its image (no network, nothing is
installed at run time), and a pickled model loads only with matching versions,
so `evaluator images list` reads them from the image itself: one short-lived,
locked-down container per image asks the image's Python for its distributions.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import docker
import docker.errors
import requests

from evaluator.config import Config
from evaluator.errors import InfrastructureError
from evaluator.sandbox.build import DEBIAN_SUITE, content_hash
from evaluator.sandbox.frameworks import IMAGE_FOR_FRAMEWORK, IMAGES, image_name

VENV_PYTHON = "/opt/venv/bin/python"  # the base image's venv, which every framework image extends
LIST_PACKAGES = ("import importlib.metadata as m, json, platform; print(json.dumps({'python': "
                 "platform.python_version(), 'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))")
MAX_LISTING_BYTES = 1 << 20  # our own images, but still a bounded read


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """One framework image on this Docker Engine."""

    image: str  # the build-context folder: base, sklearn, ...
    name: str  # the runnable image name: evaluator-sklearn
    status: str  # current | stale | built (freshness unknown) | missing
    frameworks: tuple[str, ...]  # manifest frameworks it serves
    image_id: str | None = None
    tag: str | None = None  # its content-hash tag
    python: str | None = None  # the venv's Python version (pickles depend on it too)
    packages: dict[str, str] = dataclasses.field(default_factory=dict)
    packages_error: str | None = None

    @property
    def built(self) -> bool:
        return self.status != "missing"

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "name": self.name, "built": self.built, "status": self.status,
                "frameworks": list(self.frameworks), "id": self.image_id, "tag": self.tag,
                "python": self.python, "packages": self.packages, "packages_error": self.packages_error}


def describe_images(client: docker.DockerClient, config: Config, images_dir: pathlib.Path) -> list[ImageInfo]:
    """Describe every image of IMAGES, base first; raise InfrastructureError if Docker is unreachable."""
    try:
        base_id = _image_id(client, image_name("base", config))
        roots: list[str | None] = [i for i in (_image_id(client, n) for n in _root_candidates(config)) if i]
        return [_describe(client, config, images_dir, name, roots if name == "base" else [base_id])
                for name in IMAGES]
    except (docker.errors.DockerException, requests.exceptions.RequestException) as ex:
        raise InfrastructureError(f"Docker daemon unavailable: {ex}") from ex


def _describe(client: docker.DockerClient, config: Config, images_dir: pathlib.Path, folder: str,
              parents: list[str | None]) -> ImageInfo:
    name = image_name(folder, config)
    frameworks = tuple(f for f, image in IMAGE_FOR_FRAMEWORK.items() if image == folder)
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return ImageInfo(folder, name, "missing", frameworks)
    inputs = (image.labels or {}).get("evaluator.inputs")
    tag = f"{name}:{inputs}" if inputs and f"{name}:{inputs}" in image.tags else None
    status = _freshness(images_dir / folder, inputs, [p for p in parents if p])
    python, packages, error = _packages(client, image.id)
    return ImageInfo(folder, name, status, frameworks, image.id, tag, python, packages, error)


def _freshness(folder: pathlib.Path, inputs: str | None, parents: list[str]) -> str:
    """current when the image's content hash is the build context's over one of its possible parents."""
    if not inputs or not parents or not (folder / "Dockerfile").is_file():
        return "built"
    return "current" if any(content_hash(folder, parent) == inputs for parent in parents) else "stale"


def _packages(client: docker.DockerClient, image_id: str) -> tuple[str | None, dict[str, str], str | None]:
    """Return (Python version, {distribution: version}, None) of the image's venv, or (None, {}, why not)."""
    try:
        output = client.containers.run(
            image_id, ["-c", LIST_PACKAGES], entrypoint=[VENV_PYTHON], remove=True, stdout=True, stderr=False,
            network_disabled=True, read_only=True, user="65534:65534", cap_drop=["ALL"],
            security_opt=["no-new-privileges"], mem_limit="256m", pids_limit=64,
            labels={"evaluator.role": "inventory"})
    except docker.errors.ContainerError as ex:
        return None, {}, f"{VENV_PYTHON} exited with {ex.exit_status}"
    except docker.errors.APIError as ex:
        return None, {}, f"cannot start a container of it: {ex.explanation or ex}"
    try:
        listing = json.loads(output[:MAX_LISTING_BYTES])
        python, packages = str(listing["python"]), listing["packages"]
        packages = dict(sorted(((str(k), str(v)) for k, v in packages.items()), key=lambda kv: kv[0].lower()))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, {}, "its package list is not the expected JSON"
    return python, packages, None


def _root_candidates(config: Config) -> list[str]:
    """The images the base may have been built FROM (see ImageBuilder.root_image)."""
    return [config.base_image, f"{config.image_prefix}rootfs:{DEBIAN_SUITE}"]


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        return None
