"""The Ladder's step cache (issue 14, "an honest public leaderboard"): ladder_step.

Derived data: each row is recomputable from two runs' stored predictions and the labels
(evaluator.row_store.RowStore.step); dropping the table only makes the next boards slower.
Idempotent: 0001 builds the tables from the current models, so a fresh database has it already.
"""

import datetime

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _models(db):
    class LadderStep(peewee.Model):
        id = peewee.BigAutoField()
        benchmark = peewee.TextField(index=True)
        run_id = peewee.UUIDField()
        best_run_id = peewee.UUIDField()
        metric = peewee.TextField()
        part = peewee.TextField()
        labels = peewee.TextField()
        threshold = peewee.DoubleField(null=True)
        created_at = peewee.DateTimeField(default=_utcnow)

        class Meta:
            database = db
            table_name = "ladder_step"
            indexes = ((("run_id", "best_run_id", "metric", "part", "labels"), True),)

    return [LadderStep]


def up(migrator, db):
    db.create_tables(_models(db), safe=True)


def down(migrator, db):
    db.drop_tables(_models(db), safe=True)
