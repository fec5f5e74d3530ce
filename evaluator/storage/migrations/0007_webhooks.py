"""Outgoing webhooks: subscriptions and their delivery log; an index for run ETAs (issue 14, "push, not poll").

Idempotent: 0001 builds the tables from the current models, so a fresh database
has them already; the frozen copies below keep meaning what they meant.
"""

import datetime
import uuid

import peewee


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _models(db):
    class WebhookSubscription(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
        owner = peewee.TextField(index=True)
        role = peewee.TextField()
        scope = peewee.TextField()
        benchmark = peewee.TextField(null=True, index=True)
        url = peewee.TextField()
        secret = peewee.TextField()
        events = peewee.JSONField(default=list)
        created_at = peewee.DateTimeField(default=_utcnow)

        class Meta:
            database = db
            table_name = "webhook_subscription"

    class WebhookDelivery(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
        subscription = peewee.ForeignKeyField(WebhookSubscription, on_delete="CASCADE")
        event = peewee.TextField()
        run_id = peewee.UUIDField(index=True)
        payload = peewee.JSONField()
        status = peewee.TextField(default="pending", index=True)
        attempts = peewee.JSONField(default=list)
        next_attempt_at = peewee.DateTimeField(null=True)
        created_at = peewee.DateTimeField(default=_utcnow, index=True)
        delivered_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "webhook_delivery"
            indexes = ((("subscription", "run_id", "event"), True),)

    return [WebhookSubscription, WebhookDelivery]


RUN_INDEX = "run_benchmark_id_status_finished_at"  # the name peewee gives Run's index in 0001


def up(migrator, db):
    db.create_tables(_models(db), safe=True)
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {RUN_INDEX} ON run (benchmark_id, status, finished_at)")


def down(migrator, db):
    db.execute_sql(f"DROP INDEX IF EXISTS {RUN_INDEX}")
    db.drop_tables(list(reversed(_models(db))), safe=True)
