"""Teams (issue 14): a benchmark's teams, their invitations and memberships, and each submission's team.

- team: (benchmark, name) unique; created_by invites, with the benchmark's managers;
- team_member: an invitation (state `invited`) or a membership (`accepted`); one accepted
  membership per (benchmark, member), by a partial unique index;
- submission.team_id: the team its owner belonged to when it was made (null: alone), so a
  member who leaves or changes team leaves their past runs with the team they were made for.

Idempotent: 0001 builds the tables from the current models, so a fresh database has all of it.
"""

import datetime
import uuid

import peewee

ONE_TEAM_INDEX = "team_member_one_team_per_benchmark"


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _has(db, table, column):
    return column in {c.name for c in db.get_columns(table)}


def _models(db):
    class Benchmark(peewee.Model):
        id = peewee.TextField(primary_key=True)

        class Meta:
            database = db
            table_name = "benchmark"

    class Team(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
        benchmark = peewee.ForeignKeyField(Benchmark, on_delete="CASCADE")
        name = peewee.TextField()
        created_by = peewee.TextField()
        created_at = peewee.DateTimeField(default=_utcnow)

        class Meta:
            database = db
            table_name = "team"
            indexes = ((("benchmark", "name"), True),)

    class TeamMember(peewee.Model):
        id = peewee.BigAutoField()
        team = peewee.ForeignKeyField(Team, on_delete="CASCADE")
        benchmark = peewee.TextField()
        member = peewee.TextField(index=True)
        state = peewee.TextField(default="invited")
        invited_by = peewee.TextField(null=True)
        invited_at = peewee.DateTimeField(default=_utcnow)
        accepted_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "team_member"
            indexes = ((("team", "member"), True),)

    TeamMember.add_index(TeamMember.benchmark, TeamMember.member, unique=True, name=ONE_TEAM_INDEX,
                         where=(TeamMember.state == "accepted"))
    return Team, TeamMember


def up(migrator, db):
    team, member = _models(db)
    db.create_tables([team, member], safe=True)
    if not _has(db, "submission", "team_id"):
        migrator.migrate(migrator.add_column("submission", "team_id", peewee.ForeignKeyField(
            team, null=True, on_delete="SET NULL", field=team.id)))


def down(migrator, db):
    if _has(db, "submission", "team_id"):
        migrator.migrate(migrator.drop_column("submission", "team_id"))
    db.drop_tables(list(_models(db))[::-1], safe=True)
