"""Teams of a benchmark: create, invite (the creator or a manager), accept (the invitee only), leave, remove.

A team belongs to one benchmark (as on Kaggle): its phases, quota and leaderboard are that
benchmark's, and "one team per participant per benchmark" is a unique index. The creator
(a participant) is its first member; a manager (admin, the benchmark's owner) may create an
empty team and invite. Leaving deletes the membership; the submissions made for the team stay
the team's (Submission.team), see evaluator.entrants.
"""

from __future__ import annotations

import re
import uuid

import peewee

from evaluator import competition, entrants, fields
from evaluator.benchmarks import get_benchmark
from evaluator.contract.constraints import TEAM_NAME_PATTERN
from evaluator.errors import Conflict, Forbidden, NotFound, ValidationFailed
from evaluator.settings import settings_of
from evaluator.storage import locks
from evaluator.storage.models import (
    ApiToken,
    Benchmark,
    Role,
    Team,
    TeamMember,
    TeamMemberState,
    isoformat,
    utcnow,
)
from evaluator.tokens import Principal

# Letters (any script), digits, spaces and . ' _ -; no control or direction-changing characters: it is on the board.
TEAM_NAME_MAX = 100
_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)
ACCEPTED, INVITED = TeamMemberState.ACCEPTED.value, TeamMemberState.INVITED.value


def team_name(body: dict) -> str:
    name = fields.text(body, "name", max_length=TEAM_NAME_MAX)
    if not _TEAM_NAME.match(name):
        raise ValidationFailed("'name' must be letters, digits, spaces and . ' _ -, starting with a letter or "
                               "digit", field="name")
    return name


def _uses_teams(benchmark: Benchmark) -> None:
    if not settings_of(benchmark).teams:
        raise Conflict(f"benchmark {benchmark.id} does not use teams (its settings.teams is false)")


def create_team(benchmark_id: str, body: dict, principal: Principal) -> Team:
    """Create a team; a participant creating it is its first member (and must be in no other team of it)."""
    benchmark = get_benchmark(benchmark_id, principal)
    _uses_teams(benchmark)
    name = team_name(body)
    joins = principal.role == Role.PARTICIPANT.value
    if not joins and not competition.manages(benchmark, principal):
        raise Forbidden(f"an owner token creates teams only on its own benchmarks; {benchmark.id} is not yours")
    try:
        with locks.held("team-name", benchmark.id):
            taken = Team.select().where((Team.benchmark == benchmark.id)
                                        & (peewee.fn.LOWER(Team.name) == name.lower())).exists()
            if taken:
                raise Conflict(f"benchmark {benchmark.id} already has a team named {name!r}")
            if joins:
                _not_in_another(benchmark.id, principal.owner)
            team = Team.create(benchmark=benchmark.id, name=name, created_by=principal.owner)
            if joins:
                TeamMember.create(team=team.id, benchmark=benchmark.id, member=principal.owner, state=ACCEPTED,
                                  accepted_at=utcnow())
    except peewee.IntegrityError:  # a concurrent accept or create took the membership first
        raise Conflict(f"you are already in a team of benchmark {benchmark.id}; leave it first") from None
    return team


def _not_in_another(benchmark_id: str, member: str) -> None:
    current = entrants.team_of(benchmark_id, member)
    if current is not None:
        raise Conflict(f"you are in team {current.name!r} of benchmark {benchmark_id}; leave it first "
                       f"(POST /v1/teams/{current.id}/leave)")


def get_team(team_id: str, principal: Principal | None) -> Team:
    """A team of a benchmark the caller may see; NotFound otherwise (existence does not leak)."""
    try:
        team = Team.get_or_none(Team.id == uuid.UUID(str(team_id)))
    except ValueError:
        team = None
    if team is None:
        raise NotFound(f"team {team_id} not found")
    try:
        get_benchmark(team.benchmark_id, principal)
    except NotFound:
        raise NotFound(f"team {team_id} not found") from None
    return team


def list_teams(benchmark_id: str, principal: Principal) -> list[tuple[Team, list[TeamMember]]]:
    """The benchmark's teams in creation order, each with its membership rows (one query for all)."""
    benchmark = get_benchmark(benchmark_id, principal)
    teams = list(Team.select().where(Team.benchmark == benchmark.id).order_by(Team.created_at, Team.name))
    rows: dict[uuid.UUID, list[TeamMember]] = {team.id: [] for team in teams}
    if teams:
        for row in TeamMember.select().where(TeamMember.team.in_(list(rows))).order_by(TeamMember.id):
            rows[row.team_id].append(row)
    return [(team, rows[team.id]) for team in teams]


def _rows(team: Team) -> list[TeamMember]:
    return list(TeamMember.select().where(TeamMember.team == team.id).order_by(TeamMember.id))


def _accepted(rows: list[TeamMember]) -> list[TeamMember]:
    return [row for row in rows if row.state == ACCEPTED]


def invite(team_id: str, body: dict, principal: Principal) -> Team:
    """Invite a participant: the team's creator while a member, or the benchmark's managers."""
    team = get_team(team_id, principal)
    benchmark = Benchmark.get_by_id(team.benchmark_id)
    _uses_teams(benchmark)
    rows = _rows(team)
    if not _creator(team, principal, rows) and not competition.manages(benchmark, principal):
        raise Forbidden(f"only the creator of team {team.name!r} (a member) or the managers of {benchmark.id} "
                        "invite to it")
    user = fields.slug(body, "user")
    if not ApiToken.select().where((ApiToken.owner == user) & ApiToken.revoked_at.is_null()
                                   & (ApiToken.role == Role.PARTICIPANT.value)).exists():
        raise ValidationFailed(f"'user' names no participant: {user!r} holds no participant token", field="user")
    existing = next((r for r in rows if r.member == user), None)
    if existing is not None:
        raise Conflict(f"{user} is already {'a member of' if existing.state == ACCEPTED else 'invited to'} "
                       f"team {team.name!r}")
    _room_for_one(benchmark, team, rows)
    try:
        TeamMember.create(team=team.id, benchmark=benchmark.id, member=user, state=INVITED,
                          invited_by=principal.owner)
    except peewee.IntegrityError:
        raise Conflict(f"{user} is already invited to team {team.name!r}") from None
    return team


def _creator(team: Team, principal: Principal, rows: list[TeamMember]) -> bool:
    """The team's creator, while still one of its members (after leaving, only the managers act for it)."""
    return principal.owner == team.created_by and any(r.member == principal.owner for r in _accepted(rows))


def _room_for_one(benchmark: Benchmark, team: Team, rows: list[TeamMember]) -> None:
    limit = settings_of(benchmark).max_team_size
    members = len(_accepted(rows))
    if limit is not None and members >= limit:
        raise Conflict(f"team {team.name!r} has {members} members, the most benchmark {benchmark.id} allows")


def accept(team_id: str, principal: Principal) -> Team:
    """Accept one's own invitation; only the invited user may, and only while in no other team of the benchmark."""
    team = get_team(team_id, principal)
    benchmark = Benchmark.get_by_id(team.benchmark_id)
    _uses_teams(benchmark)
    mine = TeamMember.get_or_none((TeamMember.team == team.id) & (TeamMember.member == principal.owner))
    if mine is None:
        raise Forbidden(f"only an invited user accepts: you have no invitation to team {team.name!r}")
    if mine.state == ACCEPTED:
        return team
    try:
        with locks.held("team", str(team.id)):  # NOTE: two invitees accepting the last free place queue here
            _not_in_another(benchmark.id, principal.owner)
            _room_for_one(benchmark, team, _rows(team))
            (TeamMember.update(state=ACCEPTED, accepted_at=utcnow())
             .where((TeamMember.id == mine.id) & (TeamMember.state == INVITED)).execute())
    except peewee.IntegrityError:  # the one-team index: an accept elsewhere won the race
        raise Conflict(f"you are already in a team of benchmark {benchmark.id}; leave it first") from None
    return team


def leave(team_id: str, principal: Principal) -> None:
    """Leave a team, or decline an invitation to it; the team's past runs stay its own."""
    team = get_team(team_id, principal)
    deleted = (TeamMember.delete()
               .where((TeamMember.team == team.id) & (TeamMember.member == principal.owner)).execute())
    if not deleted:
        raise Conflict(f"you are neither a member of nor invited to team {team.name!r}")


def remove(team_id: str, user: str, principal: Principal) -> None:
    """Remove a member or revoke an invitation: the benchmark's managers any, the team's creator (a member) others'.

    Removing oneself is leaving. The team's past runs stay its own either way.
    """
    team = get_team(team_id, principal)
    if user != principal.owner:
        benchmark = Benchmark.get_by_id(team.benchmark_id)
        if not _creator(team, principal, _rows(team)) and not competition.manages(benchmark, principal):
            raise Forbidden(f"only the creator of team {team.name!r} (a member) or the managers of {benchmark.id} "
                            "remove others from it")
    deleted = TeamMember.delete().where((TeamMember.team == team.id) & (TeamMember.member == user)).execute()
    if not deleted:
        raise NotFound(f"{user} is neither a member of nor invited to team {team.name!r}")


def serialize(team: Team, principal: Principal | None, rows: list[TeamMember] | None = None,
              manager: bool | None = None) -> dict:
    """A team with its members; open invitations only to its members, the invitee and the managers."""
    rows = _rows(team) if rows is None else rows
    if manager is None:
        manager = competition.manages(Benchmark.get_by_id(team.benchmark_id), principal)
    caller = principal.owner if principal is not None else None
    insider = manager or any(r.member == caller for r in _accepted(rows))
    shown = [r for r in rows if r.state == ACCEPTED or insider or r.member == caller]
    return {
        "id": str(team.id), "benchmark": team.benchmark_id, "name": team.name, "created_by": team.created_by,
        "created_at": isoformat(team.created_at), "size": len(_accepted(rows)),
        "members": [{"user": r.member, "state": r.state, "invited_by": r.invited_by,
                     "invited_at": isoformat(r.invited_at), "accepted_at": isoformat(r.accepted_at)} for r in shown],
    }
