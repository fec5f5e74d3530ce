"""An index that stamps a benchmark's succeeded runs cheaply (issue 13: pages in under 100 ms at 10,000 runs).

evaluator.board_cache keeps a leaderboard's ranking while the count and the sum of `updated_at`
of the benchmark's succeeded runs are unchanged; this index answers both from the index alone.

Idempotent: 0001 builds the tables from the current models, so a fresh database has it already.
"""

INDEX = "run_benchmark_id_status_updated_at"  # the name peewee gives Run's index in models.py


def up(migrator, db):
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {INDEX} ON run (benchmark_id, status, updated_at)")


def down(migrator, db):
    db.execute_sql(f"DROP INDEX IF EXISTS {INDEX}")
