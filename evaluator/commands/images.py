"""`evaluator images build | wheelhouse | list`: make the framework images a run needs.

The parser needs no Docker SDK: the sandbox modules are imported when a command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from typing import TYPE_CHECKING

from evaluator.config import Config
from evaluator.sandbox.frameworks import IMAGE_FOR_FRAMEWORK

if TYPE_CHECKING:
    import docker

# NOTE: the same as evaluator.sandbox.build.BASE_MODES (importing it would load the Docker SDK for --help).
BASE_MODES = ("auto", "pull", "debootstrap")


def register(subparsers: argparse._SubParsersAction) -> None:
    images = subparsers.add_parser("images", help="build and list the sandbox framework images").add_subparsers(
        dest="images_command", metavar="ACTION")

    build = images.add_parser("build", help="build the base and framework images (all when none is named)")
    build.add_argument("frameworks", nargs="*", metavar="FRAMEWORK",
                       help=f"any of {', '.join(dict.fromkeys(IMAGE_FOR_FRAMEWORK.values()))} "
                            "(xgboost and lightgbm are served by sklearn)")
    build.add_argument("--base", choices=BASE_MODES, default="auto",
                       help="root of the base image: EVALUATOR_BASE_IMAGE pulled (pull), a local debootstrap of "
                            "Debian bookworm (debootstrap), or pull falling back to debootstrap (auto, default)")
    build.add_argument("--wheelhouse", type=pathlib.Path,
                       help="install wheels only from this host folder (default: EVALUATOR_WHEELHOUSE; "
                            "none: pip uses its index inside the build)")
    build.add_argument("--download", action="store_true",
                       help="fill the wheelhouse with the host's pip first (`images wheelhouse`)")
    build.add_argument("--force", action="store_true", help="rebuild even when the content-hash tag exists")
    build.add_argument("--images-dir", type=pathlib.Path,
                       help="the folder of build contexts (default: evaluator/images/ in the package)")
    build.set_defaults(func=cmd_build)

    wheelhouse = images.add_parser("wheelhouse", help="download the images' wheels with the host's pip")
    wheelhouse.add_argument("frameworks", nargs="*", metavar="FRAMEWORK")
    wheelhouse.add_argument("--dir", type=pathlib.Path, help="default: EVALUATOR_WHEELHOUSE or ./wheelhouse")
    wheelhouse.add_argument("--images-dir", type=pathlib.Path)
    wheelhouse.set_defaults(func=cmd_wheelhouse)

    listing = images.add_parser(
        "list", help="show each framework image: built or not, current or stale, its Python packages and versions")
    listing.add_argument("--json", action="store_true", help="one JSON list (image, name, status, packages, ...)")
    listing.add_argument("--images-dir", type=pathlib.Path, help="the build contexts to compare with "
                         "(default: the ones shipped in the package)")
    listing.set_defaults(func=cmd_list)


def docker_client() -> docker.DockerClient:
    """Connect to the local Docker Engine, or raise InfrastructureError."""
    from evaluator.sandbox.runner import connect

    return connect(timeout=600)


def _wanted(frameworks: list[str]) -> list[str]:
    from evaluator.sandbox.frameworks import IMAGES, image_of

    return list(dict.fromkeys(image_of(f) for f in frameworks)) or list(IMAGES)


def cmd_wheelhouse(args: argparse.Namespace, config: Config) -> int:
    from evaluator.sandbox.build import default_images_dir, download_wheels

    folder = args.dir or pathlib.Path(config.wheelhouse or "wheelhouse")
    download_wheels(args.images_dir or default_images_dir(config), _wanted(args.frameworks), folder, print)
    return 0


def cmd_build(args: argparse.Namespace, config: Config) -> int:
    from evaluator.sandbox.build import ImageBuilder, default_images_dir, download_wheels

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
    import json
    import textwrap

    from evaluator.sandbox.build import default_images_dir
    from evaluator.sandbox.inventory import describe_images

    infos = describe_images(docker_client(), config, args.images_dir or default_images_dir(config))
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    for info in infos:
        serves = f"serves {', '.join(info.frameworks)}" if info.frameworks else "the parent of every image"
        if not info.built:
            print(f"{info.name:<22} missing   {serves}; build it: evaluator images build {info.image}")
            continue
        hint = f" (rebuild: evaluator images build {info.image})" if info.status == "stale" else ""
        print(f"{info.name:<22} {info.status:<9} {(info.image_id or '')[7:19]}  {serves}{hint}")
        packages = " ".join([f"python=={info.python}", *(f"{n}=={v}" for n, v in info.packages.items())])
        print(textwrap.fill(packages if info.python else f"(packages unknown: {info.packages_error})", width=100,
                            initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False))
    print("A bundle runs with exactly its image's packages (nothing is installed at run time);\n"
          "save pickled models (joblib, pickle, torch.save) with these versions.")
    return 0
