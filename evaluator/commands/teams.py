"""Client commands for teams: `evaluator teams list|create|show|invite|accept|leave|remove`."""

from __future__ import annotations

import argparse

from evaluator.commands.client import client_for, common_options, print_reply
from evaluator.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    common = common_options()
    teams = subparsers.add_parser(
        "teams", help="a benchmark's teams: create one, invite, accept, leave",
        description="On a benchmark whose settings.teams is on, a team is one entrant: its members share "
                    "the quota and the leaderboard lists the team's best run under its name.").add_subparsers(
        dest="teams_command", metavar="ACTION")
    listing = teams.add_parser("list", parents=[common], help="the benchmark's teams and their members")
    listing.add_argument("benchmark")
    listing.set_defaults(func=cmd_teams_list)
    create = teams.add_parser("create", parents=[common], help="create a team (you are its first member)")
    create.add_argument("benchmark")
    create.add_argument("name")
    create.set_defaults(func=cmd_teams_create)
    for action, func, text in (("show", cmd_teams_show, "one team and its members"),
                               ("accept", cmd_teams_accept, "accept your invitation to a team"),
                               ("leave", cmd_teams_leave, "leave a team, or decline its invitation")):
        parser = teams.add_parser(action, parents=[common], help=text)
        parser.add_argument("team", help="the team's id")
        parser.set_defaults(func=func)
    for action, func, text in (("invite", cmd_teams_invite, "invite a participant (the team's creator)"),
                               ("remove", cmd_teams_remove, "remove a member or revoke an invitation")):
        parser = teams.add_parser(action, parents=[common], help=text)
        parser.add_argument("team", help="the team's id")
        parser.add_argument("user", help="the participant (their token's owner name)")
        parser.set_defaults(func=func)


def format_team(team: dict) -> str:
    """A team as text: a header line, then one line per member or open invitation."""
    lines = [f"team {team['name']} ({team['id']}) of {team['benchmark']}: {team['size']} member(s), "
             f"created by {team['created_by']}"]
    for member in team["members"]:
        state = "member" if member["state"] == "accepted" else f"invited by {member['invited_by']}"
        lines.append(f"  {member['user']:<24} {state}")
    return "\n".join(lines)


def cmd_teams_list(args: argparse.Namespace, config: Config) -> int:
    page = client_for(args, config).get(f"/v1/benchmarks/{args.benchmark}/teams")
    print_reply(args, page, lambda p: "\n".join([format_team(t) for t in p["items"]] or ["(no teams)"]))
    return 0


def cmd_teams_create(args: argparse.Namespace, config: Config) -> int:
    team = client_for(args, config).post(f"/v1/benchmarks/{args.benchmark}/teams", {"name": args.name})
    print_reply(args, team, format_team)
    return 0


def cmd_teams_show(args: argparse.Namespace, config: Config) -> int:
    print_reply(args, client_for(args, config).get(f"/v1/teams/{args.team}"), format_team)
    return 0


def cmd_teams_invite(args: argparse.Namespace, config: Config) -> int:
    team = client_for(args, config).post(f"/v1/teams/{args.team}/invitations", {"user": args.user})
    print_reply(args, team, format_team)
    return 0


def cmd_teams_accept(args: argparse.Namespace, config: Config) -> int:
    print_reply(args, client_for(args, config).post(f"/v1/teams/{args.team}/invitations/accept"), format_team)
    return 0


def cmd_teams_leave(args: argparse.Namespace, config: Config) -> int:
    client_for(args, config).post(f"/v1/teams/{args.team}/leave")
    print_reply(args, {"team": args.team, "left": True}, lambda r: f"left team {r['team']}")
    return 0


def cmd_teams_remove(args: argparse.Namespace, config: Config) -> int:
    client_for(args, config).request("DELETE", f"/v1/teams/{args.team}/members/{args.user}")
    print_reply(args, {"team": args.team, "removed": args.user},
                lambda r: f"removed {r['removed']} from team {r['team']}")
    return 0
