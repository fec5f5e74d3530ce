"""Build the framework images from evaluator/images/: content-hash tags, offline wheelhouse, debootstrap base.

The build contexts ship inside the package (evaluator/images/<name>/), so an
installed wheel builds the same images as a checkout. Each image is tagged
`<prefix><name>:<hash>` and `<prefix><name>:latest`, where the hash covers its
inputs: its folder's files by path relative to the folder (Dockerfile,
requirements.txt - the pinned wheel list - and, for the base, the in-image
program) plus the id of the image it is built FROM. Where the folder lives, and
where the pinned wheels come from (index or wheelhouse), is not an input. A tag
that already exists means nothing changed, and the build is skipped.

The root of the base image comes from one of:
  pull         config.base_image (python:3.11-slim), pulled when missing;
  debootstrap  a Debian bookworm rootfs made with `debootstrap` and `docker import`
               (for hosts that reach Debian's mirror but no image registry);
  auto         the configured base if present, else a debootstrap image made here
               before, else the configured base pulled, else debootstrap.
With a wheelhouse, pip inside the build installs only from it (`--no-index`); the
folder is served on 127.0.0.1 for the duration of the build (`network_mode=host`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import importlib.resources
import logging
import pathlib
import shutil
import subprocess
import sys
import threading
from typing import Callable, Iterator, Sequence

import docker
import docker.errors
import requests

from evaluator.config import Config
from evaluator.errors import InfrastructureError, SandboxError
from evaluator.sandbox.frameworks import IMAGES, image_name, image_of

logger = logging.getLogger(__name__)

BASE_MODES = ("auto", "pull", "debootstrap")
DEBIAN_SUITE = "bookworm"
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,libgomp1,ca-certificates"

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """One image after `build_images`: its name, content-hash tag, id, and whether it was built now."""

    name: str
    tag: str
    image_id: str
    built: bool


def packaged_images_dir() -> pathlib.Path:
    """Return the images' build contexts shipped in the package (evaluator/images/)."""
    folder = importlib.resources.files("evaluator") / "images"
    if not isinstance(folder, pathlib.Path):  # a zipped install: Docker needs a folder to send
        raise SandboxError(f"the image build contexts ({folder}) are not files on disk; "
                           "install evaluator unzipped or set EVALUATOR_IMAGES_DIR")
    return folder


def default_images_dir(config: Config) -> pathlib.Path:
    """Return the packaged build contexts unless config.images_dir says otherwise."""
    if config.images_dir:
        return pathlib.Path(config.images_dir)
    return packaged_images_dir()


def content_hash(folder: pathlib.Path, parent_id: str) -> str:
    """Hash every file of an image folder (pinned wheel list included) and its parent image id.

    Paths are relative to the folder and byte-code caches are skipped (pip compiles the
    packaged in-image program on install), so a checkout and an installed wheel agree.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix != ".pyc"):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"parent={parent_id}".encode())
    return digest.hexdigest()[:16]


def requirements(images_dir: pathlib.Path, names: Sequence[str]) -> list[str]:
    """Return the pinned requirement lines of the given image folders (the wheel list)."""
    lines = []
    for name in names:
        for line in (images_dir / name / "requirements.txt").read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                lines.append(line)
    return lines


def download_wheels(images_dir: pathlib.Path, names: Sequence[str], wheelhouse: pathlib.Path,
                    progress: Progress) -> None:
    """Fill a wheelhouse with the host's pip (binary wheels only) for the given images."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    lines = requirements(images_dir, ["base", *[n for n in names if n != "base"]])
    key = hashlib.sha256("\n".join([sys.version.split()[0], *sorted(lines)]).encode()).hexdigest()[:16]
    marker = wheelhouse / f".complete-{key}"  # this exact wheel list was downloaded before
    if marker.exists():
        progress(f"[wheelhouse] up to date: {wheelhouse} ({len(lines)} pinned requirements)")
        return
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(wheelhouse), *lines]
    progress(f"[wheelhouse] pip download {' '.join(lines)}")
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in result.stdout.splitlines():
        if line.startswith(("Saved", "File was already", "Successfully", "ERROR")):
            progress(f"[wheelhouse] {line}")
    if result.returncode != 0:
        raise SandboxError(f"pip download failed for {wheelhouse}: {result.stdout.strip().splitlines()[-1:]}")
    marker.touch()


@contextlib.contextmanager
def serve_wheelhouse(wheelhouse: pathlib.Path) -> Iterator[str]:
    """Serve a wheelhouse folder on 127.0.0.1 for pip's --find-links; yield the URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            logger.debug("wheelhouse: " + format, *args)

    handler = functools.partial(Quiet, directory=str(wheelhouse))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class ImageBuilder:
    """Build evaluator/images/ into local images with a Docker client; never used by a run."""

    def __init__(
        self,
        client: docker.DockerClient,
        config: Config,
        *,
        images_dir: pathlib.Path | None = None,
        progress: Progress = print,
    ) -> None:
        self._client = client
        self._config = config
        self._images_dir = images_dir or default_images_dir(config)
        self._progress = progress

    @property
    def images_dir(self) -> pathlib.Path:
        return self._images_dir

    # --- the root of the base image ---------------------------------------------------

    @property
    def _debootstrap_name(self) -> str:
        return f"{self._config.image_prefix}rootfs:{DEBIAN_SUITE}"

    def root_image(self, mode: str) -> str:
        """Return the name of the image the base is built FROM, making it if needed."""
        if mode not in BASE_MODES:
            raise SandboxError(f"base mode {mode!r} is not one of {', '.join(BASE_MODES)}")
        if mode in ("auto", "pull"):
            name = self._config.base_image
            if self._exists(name):
                return name
            if mode == "auto" and self._exists(self._debootstrap_name):  # made here before: no pull attempt
                return self._debootstrap_name
            self._progress(f"[root] pulling {name}")
            try:
                self._client.images.pull(name)
                return name
            except docker.errors.APIError as ex:
                if mode == "pull":
                    raise SandboxError(f"cannot pull {name}: {ex.explanation or ex}") from ex
                self._progress(f"[root] cannot pull {name}; falling back to debootstrap")
        return self.debootstrap_image()

    def debootstrap_image(self) -> str:
        """Return a Debian bookworm root image made by debootstrap + docker import."""
        name = self._debootstrap_name
        if self._exists(name):
            return name
        rootfs = pathlib.Path(self._config.rootfs_dir)
        if not (rootfs / "usr" / "bin" / "python3").exists():
            if shutil.which("debootstrap") is None:
                raise SandboxError("debootstrap is not installed (apt-get install -y debootstrap)")
            self._progress(f"[root] debootstrap {DEBIAN_SUITE} into {rootfs} (about a minute)")
            shutil.rmtree(rootfs, ignore_errors=True)
            rootfs.parent.mkdir(parents=True, exist_ok=True)
            command = ["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", DEBIAN_SUITE,
                       str(rootfs)]
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                raise SandboxError(f"debootstrap failed: {result.stdout.strip().splitlines()[-3:]}")
        self._progress(f"[root] importing {rootfs} as {name}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / cache).glob("*"):
                if path.is_file() and path.name not in ("lock", "partial"):
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            repository, tag = name.rsplit(":", 1)
            self._client.api.import_image_from_stream(tar.stdout, repository=repository, tag=tag)
        finally:
            assert tar.stdout is not None  # stdout=PIPE
            tar.stdout.close()
            tar.wait()
        return name

    # --- framework images ------------------------------------------------------------

    def build(
        self,
        names: Sequence[str],
        *,
        base_mode: str = "auto",
        wheelhouse: pathlib.Path | None = None,
        force: bool = False,
    ) -> list[BuiltImage]:
        """Build the base and the named images (all when empty); skip those up to date."""
        wanted = list(dict.fromkeys(image_of(n) for n in names)) or list(IMAGES)
        wanted = ["base", *[n for n in wanted if n != "base"]]
        if wheelhouse is not None and not wheelhouse.is_dir():
            raise SandboxError(f"wheelhouse {wheelhouse} does not exist; run `evaluator images wheelhouse` first")
        with contextlib.ExitStack() as stack:
            pip_args = ""
            if wheelhouse is not None:
                pip_args = f"--no-index --find-links {stack.enter_context(serve_wheelhouse(wheelhouse))}"
            try:
                root = self.root_image(base_mode)
                base = self._build_one("base", {"BASE_IMAGE": root}, self._image_id(root), pip_args, force)
                built = [base]
                for name in wanted[1:]:
                    args = {"BASE": base.tag}
                    built.append(self._build_one(name, args, base.image_id, pip_args, force))
            except (docker.errors.DockerException, requests.exceptions.RequestException) as ex:
                if isinstance(ex, docker.errors.APIError) and ex.response is not None and ex.status_code < 500:
                    raise SandboxError(f"image build failed: {ex.explanation or ex}") from ex
                raise InfrastructureError(f"Docker daemon unavailable: {ex}") from ex
        return built

    def _build_one(
        self, name: str, buildargs: dict, parent_id: str, pip_args: str, force: bool
    ) -> BuiltImage:
        folder = self._images_dir / name
        if not (folder / "Dockerfile").is_file():
            raise SandboxError(f"{folder}/Dockerfile not found; is images_dir ({self._images_dir}) right?")
        repository = image_name(name, self._config)
        digest = content_hash(folder, parent_id)
        tag = f"{repository}:{digest}"
        if not force and self._exists(tag):
            image = self._client.images.get(tag)
            image.tag(repository, "latest")
            self._progress(f"[{name}] up to date: {tag}")
            return BuiltImage(repository, tag, image.id, built=False)
        self._progress(f"[{name}] building {tag}")
        stream = self._client.api.build(
            path=str(folder),
            tag=tag,
            buildargs={**buildargs, "PIP_ARGS": pip_args},
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
            labels={"evaluator.image": name, "evaluator.inputs": digest},
        )
        for chunk in stream:
            if "error" in chunk:
                raise SandboxError(f"building {tag} failed: {chunk['error'].strip()}")
            line = chunk.get("stream", "").rstrip()
            if line:
                self._progress(f"[{name}] {line}")
        image = self._client.images.get(tag)
        image.tag(repository, "latest")
        self._progress(f"[{name}] built {tag} ({image.short_id})")
        self._untag_superseded(repository, tag)
        return BuiltImage(repository, tag, image.id, built=True)

    def _untag_superseded(self, repository: str, current: str) -> None:
        """Drop older content-hash tags of this image, so old layers do not pile up on disk."""
        for image in self._client.images.list(name=repository):
            for tag in image.tags:
                if tag in (current, f"{repository}:latest") or not tag.startswith(f"{repository}:"):
                    continue
                try:
                    self._client.images.remove(tag)
                    self._progress(f"[{repository}] removed superseded {tag}")
                except docker.errors.APIError as ex:  # still used by a container: keep it
                    logger.info("Kept %s: %s", tag, ex.explanation or ex)

    def _exists(self, name: str) -> bool:
        try:
            self._client.images.get(name)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _image_id(self, name: str) -> str:
        return self._client.images.get(name).id


def ensure_images(
    config: Config,
    frameworks: Sequence[str] = (),
    *,
    base_mode: str = "auto",
    wheelhouse: pathlib.Path | None = None,
    progress: Progress = print,
) -> list[BuiltImage]:
    """Build whatever of these images is missing or stale; a no-op (about a second) when all are current.

    The wheelhouse defaults to config.wheelhouse; when there is one, it is filled first
    with the host's pip (skipped when this exact wheel list was downloaded before).
    """
    from evaluator.sandbox.runner import connect

    if wheelhouse is None and config.wheelhouse:
        wheelhouse = pathlib.Path(config.wheelhouse)
    builder = ImageBuilder(connect(timeout=600), config, progress=progress)
    if wheelhouse is not None:
        download_wheels(builder.images_dir, [image_of(f) for f in frameworks] or list(IMAGES), wheelhouse, progress)
    return builder.build(frameworks, base_mode=base_mode, wheelhouse=wheelhouse)
