"""Resources for teams: /v1/benchmarks/{b}/teams and /v1/teams/{t} (invitations, accept, leave, members)."""

from __future__ import annotations

import falcon

from evaluator import competition, teams
from evaluator.api.operations import EMPTY, TOKEN, operation
from evaluator.benchmarks import get_benchmark
from evaluator.contract import inputs, outputs


class BenchmarkTeams:
    @operation("listTeams", "The benchmark's teams and their members", tag="teams", access=TOKEN,
               responses={200: outputs.TeamList}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        principal = req.context.principal
        manager = competition.manages(get_benchmark(benchmark_id, principal), principal)
        resp.media = {"items": [teams.serialize(team, principal, rows, manager)
                                for team, rows in teams.list_teams(benchmark_id, principal)]}

    @operation("createTeam", "Create a team (settings.teams); a participant creating it is its first member",
               tag="teams", access=TOKEN, body=inputs.TeamIn, responses={201: outputs.Team},
               errors=(403, 404, 409),
               description="409 when the benchmark does not use teams, the name is taken, or the caller is "
                           "already in a team of the benchmark (one team per participant per benchmark).")
    def on_post(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        team = teams.create_team(benchmark_id, req.context.body, req.context.principal)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/teams/{team.id}"
        resp.media = teams.serialize(team, req.context.principal)


class TeamItem:
    @operation("getTeam", "One team: its members (open invitations to its members, the invitee, managers)",
               tag="teams", access=TOKEN, responses={200: outputs.Team}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, team_id: str) -> None:
        resp.media = teams.serialize(teams.get_team(team_id, req.context.principal), req.context.principal)

    @operation("inviteToTeam", "Invite a participant (the team's creator, or the benchmark's managers)",
               tag="teams", access=TOKEN, body=inputs.InvitationIn, responses={201: outputs.Team},
               errors=(403, 404, 409))
    def on_post_invitations(self, req: falcon.Request, resp: falcon.Response, team_id: str) -> None:
        team = teams.invite(team_id, req.context.body, req.context.principal)
        resp.status = falcon.HTTP_201
        resp.media = teams.serialize(team, req.context.principal)

    @operation("acceptTeamInvitation", "Accept your invitation to the team (the invited user only)", tag="teams",
               access=TOKEN, responses={200: outputs.Team}, errors=(403, 404, 409),
               description="403 for anyone without an invitation to it; 409 while the caller is in another "
                           "team of the benchmark or the team is full (settings.max_team_size).")
    def on_post_accept(self, req: falcon.Request, resp: falcon.Response, team_id: str) -> None:
        team = teams.accept(team_id, req.context.principal)
        resp.media = teams.serialize(team, req.context.principal)

    @operation("leaveTeam", "Leave the team (or decline its invitation); its past runs stay the team's",
               tag="teams", access=TOKEN, responses={204: EMPTY}, errors=(404, 409))
    def on_post_leave(self, req: falcon.Request, resp: falcon.Response, team_id: str) -> None:
        teams.leave(team_id, req.context.principal)
        resp.status = falcon.HTTP_204

    @operation("removeTeamMember", "Remove a member or revoke an invitation (the team's creator, or the managers)",
               tag="teams", access=TOKEN, responses={204: EMPTY}, errors=(403, 404),
               description="Anyone may remove themselves (that is leaving). The team's past runs stay its own.")
    def on_delete_member(self, req: falcon.Request, resp: falcon.Response, team_id: str, user: str) -> None:
        teams.remove(team_id, user, req.context.principal)
        resp.status = falcon.HTTP_204
