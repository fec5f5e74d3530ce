"""Apply the numbered schema scripts under storage/migrations/ (playhouse.migrations)."""

from __future__ import annotations

from pathlib import Path

import peewee
from playhouse.migrations import Runner

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "storage" / "migrations"


def migrate(db: peewee.Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations folder {directory} not found (is the source tree installed?)")
    return list(Runner(db, directory=str(directory)).up() or [])


def status(db: peewee.Database, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, bool]]:
    return [(m.name, bool(m.applied)) for m in Runner(db, directory=str(directory)).status()]
