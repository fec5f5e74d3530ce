#!/usr/bin/env python3
"""Print the platform image's dependencies, one per line: setup.cfg's install_requires and the build backend.

The single list both the host's `pip download` (scripts/build-platform-image.sh) and the Dockerfile's
dependency layer install from, so that layer changes only when setup.cfg or pyproject.toml do.
Usage: platform-requirements.py [PROJECT_DIR]
"""

import configparser
import pathlib
import sys
import tomllib

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
setup = configparser.ConfigParser()
setup.read(root / "setup.cfg")
requirements = [line.strip() for line in setup["options"]["install_requires"].splitlines() if line.strip()]
requirements += tomllib.loads((root / "pyproject.toml").read_text())["build-system"]["requires"]
print("\n".join(requirements))
