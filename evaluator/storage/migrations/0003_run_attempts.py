"""Runs count the times a worker died holding them (the poison-pill guard of issues 10 and 17).

Each attempt's worker and timestamps live in the run's provenance (`attempts`),
a JSON column that already exists. Idempotent: 0001 builds the tables from the
current models, so a fresh database has the column already.
"""

import peewee


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def up(migrator, db):
    if not _has(db, "run", "crashes"):
        migrator.migrate(migrator.add_column("run", "crashes", peewee.IntegerField(default=0)))


def down(migrator, db):
    if _has(db, "run", "crashes"):
        migrator.migrate(migrator.drop_column("run", "crashes"))
