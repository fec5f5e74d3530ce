"""Prediction-file submissions, baselines and the leaderboard's history (issue 14).

- submission.kind: `bundle` (a model the sandbox runs) or `predictions` (a CSV or Parquet file);
- submission.baseline: a manager's reference entry, shown on the leaderboard and never ranked;
- benchmark_revision: a benchmark's primary metric, metrics and settings from `changed_at` on, so
  `?at=` ranks with the rules then in force. Each existing benchmark gets one revision at its
  creation time with its current rules (the best that is known of its past).

Idempotent: 0001 builds the tables from the current models, so a fresh database has all of it.
"""

import datetime

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def _model(db):
    class Benchmark(peewee.Model):
        id = peewee.TextField(primary_key=True)

        class Meta:
            database = db
            table_name = "benchmark"

    class BenchmarkRevision(peewee.Model):
        id = peewee.BigAutoField()
        benchmark = peewee.ForeignKeyField(Benchmark, backref="revisions", on_delete="CASCADE")
        primary_metric = peewee.TextField()
        metrics = peewee.JSONField(default=list)
        settings = peewee.JSONField(default=dict)
        changed_at = peewee.DateTimeField(default=_utcnow, index=True)

        class Meta:
            database = db
            table_name = "benchmark_revision"

    return BenchmarkRevision


def up(migrator, db):
    changes = []
    if not _has(db, "submission", "kind"):
        changes.append(migrator.add_column("submission", "kind", peewee.TextField(default="bundle")))
    if not _has(db, "submission", "baseline"):
        changes.append(migrator.add_column("submission", "baseline", peewee.BooleanField(default=False)))
    if changes:
        migrator.migrate(*changes)
    revision = _model(db)
    if not db.table_exists("benchmark_revision"):
        db.create_tables([revision], safe=True)
    db.execute_sql(
        "INSERT INTO benchmark_revision (benchmark_id, primary_metric, metrics, settings, changed_at) "
        "SELECT b.id, b.primary_metric, b.metrics, b.settings, b.created_at FROM benchmark b "
        "WHERE NOT EXISTS (SELECT 1 FROM benchmark_revision r WHERE r.benchmark_id = b.id)")


def down(migrator, db):
    db.drop_tables([_model(db)], safe=True)
    for column in ("kind", "baseline"):
        if _has(db, "submission", column):
            migrator.migrate(migrator.drop_column("submission", column))
