"""The leaderboard's compact values (issue 13: a cold board of 10,000 runs in well under 100 ms).

- run.board_values: the flat numbers of a run's metrics documents (evaluator.storage.board_values),
  what a board ranks on, so PostgreSQL no longer detoasts every large document to rank; backfilled
  here from the documents of existing rows (batches of 500);
- run (benchmark_id, status) for succeeded runs only: the board's per-benchmark scan of succeeded runs.

Idempotent: 0001 builds the tables from the current models, so a fresh database has the column.
"""

import json

import peewee

from evaluator.storage import board_values

INDEX = "run_benchmark_id_succeeded"
BATCH = 500


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def _document(raw):
    """A JSON column as read by a raw cursor: decoded by psycopg2 (jsonb), text on SQLite."""
    return json.loads(raw) if isinstance(raw, str) else raw


def backfill(db):
    """Write board_values of every row with documents that has none yet (what the model writes on save)."""
    while True:
        rows = db.execute_sql(
            "SELECT id, metrics, private_metrics FROM run WHERE board_values IS NULL "
            "AND (metrics IS NOT NULL OR private_metrics IS NOT NULL) ORDER BY id LIMIT %d" % BATCH).fetchall()
        if not rows:
            return
        with db.atomic():
            for run_id, metrics, private in rows:
                values = board_values.of(_document(metrics), _document(private))
                db.execute_sql(f"UPDATE run SET board_values = {db.param} WHERE id = {db.param}",
                               (json.dumps(values), run_id))


def up(migrator, db):
    if not _has(db, "run", "board_values"):
        migrator.migrate(migrator.add_column("run", "board_values", peewee.JSONField(null=True)))
    backfill(db)
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {INDEX} ON run (benchmark_id) WHERE status = 'succeeded'")


def down(migrator, db):
    db.execute_sql(f"DROP INDEX IF EXISTS {INDEX}")
    if _has(db, "run", "board_values"):
        migrator.migrate(migrator.drop_column("run", "board_values"))
