"""Datasets get an owner (who registered them) and submissions the token that asked for their grant.

Rows from before stay `owner = NULL`: such a dataset is the admins' alone.
Idempotent: 0001 builds the tables from the current models, so a fresh
database has both columns already and this script adds nothing there.
"""

import peewee

_COLUMNS = (  # (table, column, field): frozen copies, as they were when this script was written
    ("dataset", "owner", lambda: peewee.TextField(null=True)),
    ("submission", "token_id", lambda: peewee.UUIDField(null=True)),
)


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def up(migrator, db):
    for table, column, field in _COLUMNS:
        if not _has(db, table, column):
            migrator.migrate(migrator.add_column(table, column, field()), migrator.add_index(table, (column,)))


def down(migrator, db):
    for table, column, _ in _COLUMNS:
        if _has(db, table, column):
            migrator.migrate(migrator.drop_column(table, column))
