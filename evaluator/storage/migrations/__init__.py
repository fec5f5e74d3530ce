"""Apply the numbered schema scripts shipped in this package (playhouse.migrations).

The scripts (0001_initial.py, ...) sit next to this file, so an installed
wheel carries them; playhouse loads each by path, never by import name.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import peewee
from playhouse.migrations import Runner


def scripts_dir() -> Path:
    """Return the folder of the migration scripts: this package's own files on disk."""
    folder = importlib.resources.files(__name__)
    if not isinstance(folder, Path):  # a zipped install: playhouse needs real files
        raise FileNotFoundError(f"the migration scripts of {__name__} are not files on disk ({folder})")
    return folder


MIGRATIONS_DIR = scripts_dir()


def migrate(db: peewee.Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations folder {directory} not found")
    return list(Runner(db, directory=str(directory)).up() or [])


def status(db: peewee.Database, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, bool]]:
    """Return (name, applied) of every migration script and applied row, in order."""
    return [(m.name, bool(m.applied)) for m in Runner(db, directory=str(directory)).status()]
