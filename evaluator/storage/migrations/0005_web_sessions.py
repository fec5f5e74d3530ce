"""Browser sessions of the web pages (issue 13): a row per sign-in, so sign-out revokes on the server.

Idempotent: 0001 builds the tables from the current models, so a fresh database
has the table already; the frozen copy below keeps meaning what it meant.
"""

import datetime
import uuid

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _model(db):
    class ApiToken(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)

        class Meta:
            database = db
            table_name = "api_token"

    class WebSession(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
        secret_hash = peewee.TextField(unique=True)
        token = peewee.ForeignKeyField(ApiToken, on_delete="CASCADE")
        csrf_token = peewee.TextField()
        created_at = peewee.DateTimeField(default=_utcnow)
        expires_at = peewee.DateTimeField(index=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "web_session"

    return WebSession


def up(migrator, db):
    db.create_tables([_model(db)], safe=True)


def down(migrator, db):
    db.drop_tables([_model(db)], safe=True)
