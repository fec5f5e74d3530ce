"""`evaluator images build | wheelhouse | list`: make the framework images a run needs."""

from __future__ import annotations

import argparse
import pathlib
import time

import docker
import docker.errors

from evaluator.config import Config
from evaluator.sandbox.build import BASE_MODES, ImageBuilder, default_images_dir, download_wheels
from evaluator.sandbox.images import IMAGES, image_name, image_of
from evaluator.sandbox.runner import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    images = subparsers.add_parser("images", help="build and list the sandbox framework images").add_subparsers(
        dest="images_command", metavar="ACTION")

    build = images.add_parser("build", help="build the base and framework images (all when none is named)")
    build.add_argument("frameworks", nargs="*", metavar="FRAMEWORK",
                       help=f"any of {', '.join(IMAGES[1:])} (xgboost and lightgbm are served by sklearn)")
    build.add_argument("--base", choices=BASE_MODES, default="auto",
                       help="root of the base image: EVALUATOR_BASE_IMAGE pulled (pull), a local debootstrap of "
                            "Debian bookworm (debootstrap), or pull falling back to debootstrap (auto, default)")
    build.add_argument("--wheelhouse", type=pathlib.Path,
                       help="install wheels only from this host folder (default: EVALUATOR_WHEELHOUSE; "
                            "none: pip uses its index inside the build)")
    build.add_argument("--download", action="store_true",
                       help="fill the wheelhouse with the host's pip first (`images wheelhouse`)")
    build.add_argument("--force", action="store_true", help="rebuild even when the content-hash tag exists")
    build.add_argument("--images-dir", type=pathlib.Path, help="the images/ folder (default: this checkout's)")
    build.set_defaults(func=cmd_build)

    wheelhouse = images.add_parser("wheelhouse", help="download the images' wheels with the host's pip")
    wheelhouse.add_argument("frameworks", nargs="*", metavar="FRAMEWORK")
    wheelhouse.add_argument("--dir", type=pathlib.Path, help="default: EVALUATOR_WHEELHOUSE or ./wheelhouse")
    wheelhouse.add_argument("--images-dir", type=pathlib.Path)
    wheelhouse.set_defaults(func=cmd_wheelhouse)

    listing = images.add_parser("list", help="show which framework images are built here")
    listing.set_defaults(func=cmd_list)


def docker_client() -> docker.DockerClient:
    """Connect to the local Docker Engine, or raise InfrastructureError."""
    return connect(timeout=600)


def _wanted(frameworks: list[str]) -> list[str]:
    return list(dict.fromkeys(image_of(f) for f in frameworks)) or list(IMAGES)


def cmd_wheelhouse(args: argparse.Namespace, config: Config) -> int:
    folder = args.dir or pathlib.Path(config.wheelhouse or "wheelhouse")
    download_wheels(args.images_dir or default_images_dir(config), _wanted(args.frameworks), folder, print)
    return 0


def cmd_build(args: argparse.Namespace, config: Config) -> int:
    started = time.monotonic()
    images_dir = args.images_dir or default_images_dir(config)
    wheelhouse = args.wheelhouse or (pathlib.Path(config.wheelhouse) if config.wheelhouse else None)
    if args.download:
        wheelhouse = wheelhouse or pathlib.Path("wheelhouse")
        download_wheels(images_dir, _wanted(args.frameworks), wheelhouse, print)
    builder = ImageBuilder(docker_client(), config, images_dir=images_dir,
                           progress=lambda line: print(line, flush=True))
    built = builder.build(args.frameworks, base_mode=args.base, wheelhouse=wheelhouse, force=args.force)
    for image in built:
        state = "built" if image.built else "cached"
        print(f"{image.name:<24} {image.tag:<40} {image.image_id[:19]}  {state}")
    print(f"done in {time.monotonic() - started:.1f}s")
    return 0


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    client = docker_client()
    for name in IMAGES:
        repository = image_name(name, config)
        try:
            image = client.images.get(repository)
        except docker.errors.ImageNotFound:
            print(f"{repository:<24} missing (evaluator images build {name})")
            continue
        tags = ", ".join(t for t in image.tags if not t.endswith(":latest"))
        print(f"{repository:<24} {image.id[:19]}  {tags}")
    return 0
