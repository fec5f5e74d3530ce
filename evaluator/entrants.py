"""Who competes on a benchmark: a participant alone, or their team when the benchmark's settings.teams is on.

A submission records its owner's team when it is made (Submission.team). Ranking reads that
record, never today's memberships, so a member who leaves or changes team leaves their past
runs with the team they were made for. A team's quota counts its own submissions and those its
current members made in the window (alone or for another team), so moving between teams
does not refill a quota.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

import peewee

from evaluator.settings import settings_of
from evaluator.storage.models import Submission, Team, TeamMember, TeamMemberState


def team_of(benchmark_id: str, member: str) -> Team | None:
    """The team of the benchmark `member` is an accepted member of now, or None."""
    return (Team.select().join(TeamMember)
            .where((TeamMember.benchmark == benchmark_id) & (TeamMember.member == member)
                   & (TeamMember.state == TeamMemberState.ACCEPTED.value)).first())


def members_of(team_id: uuid.UUID) -> list[str]:
    """The team's accepted members, in the order they joined."""
    query = (TeamMember.select(TeamMember.member)
             .where((TeamMember.team == team_id) & (TeamMember.state == TeamMemberState.ACCEPTED.value))
             .order_by(TeamMember.accepted_at, TeamMember.id))
    return [row.member for row in query]


def key(submission: Submission, teams: bool) -> str:
    """The entrant a submission counts for: `team:<id>` when it was made for a team (and teams count), else its owner.

    Owners are slugs, which never hold a ':', so the two kinds cannot collide.
    """
    if teams and submission.team_id is not None:
        return f"team:{submission.team_id}"
    return submission.owner


def names(team_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Team names by id, in one query."""
    wanted = {team_id for team_id in team_ids if team_id is not None}
    if not wanted:
        return {}
    return {row.id: row.name for row in Team.select(Team.id, Team.name).where(Team.id.in_(wanted))}


@dataclasses.dataclass(frozen=True)
class QuotaScope:
    """Whose submissions a participant's quota counts, and the lock that serializes them."""

    holder: str  # the lock's name: the owner, or `team:<id>` (as key() names entrants)
    team: Team | None
    condition: peewee.Expression  # over Submission


def quota_scope(benchmark, owner: str) -> QuotaScope:
    """The participant alone, or (settings.teams) their team: its submissions and its members' own."""
    team = team_of(benchmark.id, owner) if settings_of(benchmark).teams else None
    if team is None:
        return QuotaScope(owner, None, Submission.owner == owner)
    members = members_of(team.id) or [owner]
    return QuotaScope(f"team:{team.id}", team, (Submission.team == team.id) | Submission.owner.in_(members))
