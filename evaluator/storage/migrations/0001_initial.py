"""Initial schema: datasets, benchmarks, submissions, runs, object events, API tokens.

NOTE: this first script builds the tables from the application models. Every
later script must declare frozen copies (playhouse.migrations' rule) so that
it keeps meaning what it meant when it was written.
"""

from evaluator.storage.models import ALL_MODELS


def up(migrator, db):
    db.create_tables(ALL_MODELS, safe=True)


def down(migrator, db):
    db.drop_tables(list(reversed(ALL_MODELS)), safe=True)
