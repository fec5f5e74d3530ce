"""The transactional outbox: broker messages committed with the change that needs them (issue 17).

Idempotent: 0001 builds the tables from the current models, so a fresh database
has the table already; the frozen copy below keeps meaning what it meant.
"""

import datetime

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _model(db):
    class OutboxMessage(peewee.Model):
        id = peewee.BigAutoField()
        kind = peewee.TextField()
        argument = peewee.TextField()
        created_at = peewee.DateTimeField(default=_utcnow, index=True)
        sent_at = peewee.DateTimeField(null=True, index=True)
        attempts = peewee.IntegerField(default=0)
        last_error = peewee.TextField(null=True)

        class Meta:
            database = db
            table_name = "outbox_message"

    return OutboxMessage


def up(migrator, db):
    db.create_tables([_model(db)], safe=True)


def down(migrator, db):
    db.drop_tables([_model(db)], safe=True)
