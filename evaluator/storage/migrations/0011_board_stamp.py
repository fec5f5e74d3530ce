"""Indexes for the leaderboard page at 10,000 runs (issue 13: pages in under 100 ms server-side).

- run (benchmark_id, status, updated_at): evaluator.board_cache keeps a ranking while the count and
  the sum of `updated_at` of the benchmark's succeeded runs are unchanged; answered from the index;
- submission (benchmark_id, owner, created_at): the page's submission counts and dates per
  participant and in total, from the index alone.

Idempotent: 0001 builds the tables from the current models, so a fresh database has it already.
"""

INDEX = "run_benchmark_id_status_updated_at"  # the names peewee gives the indexes in models.py
SUBMISSION_INDEX = "submission_benchmark_id_owner_created_at"


def up(migrator, db):
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {INDEX} ON run (benchmark_id, status, updated_at)")
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {SUBMISSION_INDEX} ON submission (benchmark_id, owner, created_at)")


def down(migrator, db):
    db.execute_sql(f"DROP INDEX IF EXISTS {INDEX}")
    db.execute_sql(f"DROP INDEX IF EXISTS {SUBMISSION_INDEX}")
