"""Benchmark phases (issue 14): a phase table, the phase of submissions and runs, runs migrated between phases.

A submission keeps one run of its own; a migrated run re-evaluates it on a later
phase, so the unique index on run.submission_id becomes two partial ones: the
original run per submission, and one migrated run per (submission, phase).
Idempotent: 0001 builds the tables from the current models, so a fresh database
has them already; the frozen copy below keeps meaning what it meant.
"""

import datetime

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def _phase_model(db):
    class Benchmark(peewee.Model):
        id = peewee.TextField(primary_key=True)

        class Meta:
            database = db
            table_name = "benchmark"

    class Dataset(peewee.Model):
        id = peewee.UUIDField(primary_key=True)

        class Meta:
            database = db
            table_name = "dataset"

    class Phase(peewee.Model):
        id = peewee.BigAutoField()
        benchmark = peewee.ForeignKeyField(Benchmark, on_delete="CASCADE")
        slug = peewee.TextField()
        ordinal = peewee.IntegerField()
        title = peewee.TextField(null=True)
        dataset = peewee.ForeignKeyField(Dataset, null=True, on_delete="RESTRICT")
        task = peewee.TextField(null=True)
        primary_metric = peewee.TextField(null=True)
        metrics = peewee.JSONField(null=True)
        opens_at = peewee.DateTimeField(null=True)
        closes_at = peewee.DateTimeField(null=True)
        quota = peewee.JSONField(null=True)
        limits = peewee.JSONField(null=True)
        visibility = peewee.TextField(default="public")
        created_at = peewee.DateTimeField(default=_utcnow)

        class Meta:
            database = db
            table_name = "phase"
            indexes = ((("benchmark", "slug"), True), (("benchmark", "ordinal"), True))

    return Phase


def up(migrator, db):
    phase = _phase_model(db)
    db.create_tables([phase], safe=True)
    changes = []
    if not _has(db, "submission", "phase_id"):
        changes.append(migrator.add_column("submission", "phase_id", peewee.ForeignKeyField(
            phase, null=True, on_delete="SET NULL", field=phase.id)))
    if not _has(db, "run", "phase_id"):
        changes.append(migrator.add_column("run", "phase_id", peewee.ForeignKeyField(
            phase, null=True, on_delete="SET NULL", field=phase.id)))
    if changes:
        migrator.migrate(*changes)
    if not _has(db, "run", "migrated_from_id"):
        db.execute_sql("ALTER TABLE run ADD COLUMN migrated_from_id UUID NULL REFERENCES run (id) ON DELETE SET NULL"
                       if isinstance(db, peewee.PostgresqlDatabase) else
                       "ALTER TABLE run ADD COLUMN migrated_from_id VARCHAR(40) NULL REFERENCES run (id) "
                       "ON DELETE SET NULL")
    # The one-run-per-submission rule now holds for a submission's own run only.
    db.execute_sql("DROP INDEX IF EXISTS run_submission_id")
    db.execute_sql("CREATE INDEX IF NOT EXISTS run_submission_id ON run (submission_id)")
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS run_submission_original ON run (submission_id) "
                   "WHERE migrated_from_id IS NULL")
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS run_submission_phase_migrated ON run (submission_id, phase_id) "
                   "WHERE migrated_from_id IS NOT NULL")
    for table in ("submission", "run"):
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS {table}_phase_id ON {table} (phase_id)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS run_migrated_from_id ON run (migrated_from_id)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS run_submission_phase_migrated")
    db.execute_sql("DROP INDEX IF EXISTS run_submission_original")
    db.execute_sql("DROP INDEX IF EXISTS run_submission_id")
    db.execute_sql("DELETE FROM run WHERE migrated_from_id IS NOT NULL")
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS run_submission_id ON run (submission_id)")
    # NOTE: SQLite drops a foreign-key column only by rebuilding the table (playhouse's legacy path)
    legacy = {} if isinstance(db, peewee.PostgresqlDatabase) else {"legacy": True}
    for table, column in (("run", "migrated_from_id"), ("run", "phase_id"), ("submission", "phase_id")):
        if _has(db, table, column):
            migrator.migrate(migrator.drop_column(table, column, **legacy))
    db.drop_tables([_phase_model(db)], safe=True)
