"""Teams through HTTP on real PostgreSQL: invitations, one team per benchmark, team quota and board, history."""

from __future__ import annotations

import concurrent.futures
import datetime
import importlib.util
import threading

import peewee
import pytest

from evaluator import runs
from evaluator.storage.models import Run, Submission, TeamMember, utcnow
from evaluator.tokens import create_token
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


def token(owner: str, role: str = "participant") -> dict:
    secret, _ = create_token(owner, role)
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def carol(db) -> dict:
    return token("carol")


@pytest.fixture
def league(api, admin):
    """A benchmark `league` whose settings say teams compete (quota and settings per test)."""
    register_dataset_over_http(api, admin)

    def make(quota=None, **settings):
        return create_benchmark(api, admin, benchmark_id="league", quota=quota or {},
                                settings={"teams": True, **settings})
    return make


def create_team(api, headers, name, benchmark="league") -> dict:
    response = api.simulate_post(f"/v1/benchmarks/{benchmark}/teams", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json


def invite(api, headers, team, user):
    return api.simulate_post(f"/v1/teams/{team['id']}/invitations", json={"user": user}, headers=headers)


def accept(api, headers, team):
    return api.simulate_post(f"/v1/teams/{team['id']}/invitations/accept", headers=headers)


def join(api, creator, member, member_name, team) -> None:
    assert invite(api, creator, team, member_name).status_code == 201
    assert accept(api, member, team).status_code == 200


def submit(api, headers, benchmark="league"):
    return api.simulate_post(f"/v1/benchmarks/{benchmark}/submissions", json={"name": "m"}, headers=headers)


def scored(api, headers, accuracy: float, minutes_ago: int = 0) -> Run:
    """Submit over HTTP, then record the run as the pipeline leaves it (succeeded, metrics, finish time)."""
    response = submit(api, headers)
    assert response.status_code == 201, response.text
    run, _ = runs.create_or_get_run(Submission.get_by_id(response.json["submission"]["id"]))
    Run.update(status="succeeded", metrics={"metrics": {"accuracy": accuracy}},
               finished_at=utcnow() - datetime.timedelta(minutes=minutes_ago)).where(Run.id == run.id).execute()
    return Run.get_by_id(run.id)


def board(api, headers, **params) -> dict:
    response = api.simulate_get("/v1/benchmarks/league/leaderboard", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json


def members(team: dict) -> list[tuple[str, str]]:
    return [(m["user"], m["state"]) for m in team["members"]]


def test_invite_then_accept_by_the_invited_user_only(api, league, admin, alice, bob, carol):
    league()
    team = create_team(api, alice, "Gradient Descenders")
    assert (team["name"], team["created_by"], members(team), team["size"]) == (
        "Gradient Descenders", "alice", [("alice", "accepted")], 1)
    invited = invite(api, alice, team, "bob")
    assert invited.status_code == 201 and members(invited.json) == [("alice", "accepted"), ("bob", "invited")]
    assert invited.json["members"][1]["invited_by"] == "alice"

    # The invitee sees their invitation; an outsider sees the members only.
    listed = api.simulate_get("/v1/benchmarks/league/teams", headers=bob).json["items"]
    assert [(t["id"], members(t)) for t in listed] == [(team["id"], [("alice", "accepted"), ("bob", "invited")])]
    assert members(api.simulate_get(f"/v1/teams/{team['id']}", headers=carol).json) == [("alice", "accepted")]

    # Nobody but the invited user accepts: not an outsider, not the inviter on the invitee's behalf.
    refused = accept(api, carol, team)
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "forbidden")
    assert TeamMember.get(TeamMember.member == "bob").state == "invited"
    accepted = accept(api, bob, team)
    assert accepted.status_code == 200 and members(accepted.json) == [("alice", "accepted"), ("bob", "accepted")]
    assert accepted.json["size"] == 2 and accepted.json["members"][1]["accepted_at"]

    # Only the creator (while a member) or a manager invites.
    assert invite(api, bob, team, "carol").status_code == 403
    by_admin = invite(api, admin, team, "carol")
    assert by_admin.status_code == 201 and by_admin.json["members"][2]["invited_by"] == "admin"
    # Declining is leaving an invitation.
    assert api.simulate_post(f"/v1/teams/{team['id']}/leave", headers=carol).status_code == 204
    assert members(api.simulate_get(f"/v1/teams/{team['id']}", headers=alice).json) == [
        ("alice", "accepted"), ("bob", "accepted")]
    again = api.simulate_post(f"/v1/teams/{team['id']}/leave", headers=carol)
    assert (again.status_code, again.json["error"]["code"]) == (409, "conflict")


def test_the_creator_or_a_manager_removes_members_and_revokes_invitations(api, league, admin, alice, bob, carol):
    league()
    team = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", team)
    assert invite(api, alice, team, "carol").status_code == 201

    def remove(headers, user):
        return api.simulate_delete(f"/v1/teams/{team['id']}/members/{user}", headers=headers)

    assert remove(bob, "alice").status_code == 403  # a member who is not the creator
    assert remove(alice, "carol").status_code == 204  # the creator revokes an invitation
    assert accept(api, carol, team).status_code == 403  # revoked: nothing to accept
    assert remove(admin, "bob").status_code == 204  # a manager removes a member
    assert remove(admin, "bob").status_code == 404
    assert members(api.simulate_get(f"/v1/teams/{team['id']}", headers=alice).json) == [("alice", "accepted")]
    assert remove(alice, "alice").status_code == 204  # oneself: leaving


def test_one_team_per_participant_per_benchmark_and_the_other_refusals(api, league, admin, alice, bob, carol):
    league(max_team_size=2)
    first = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", first)
    second = create_team(api, carol, "Beta")
    assert invite(api, carol, second, "bob").status_code == 201  # an invitation is not a membership
    busy = accept(api, bob, second)
    assert busy.status_code == 409 and "Alpha" in busy.json["error"]["message"]
    assert api.simulate_post("/v1/benchmarks/league/teams", json={"name": "Gamma"}, headers=bob).status_code == 409
    # The database holds the rule too: a second accepted membership in the benchmark is refused.
    with pytest.raises(peewee.IntegrityError), TeamMember._meta.database.atomic():
        TeamMember.update(state="accepted").where(TeamMember.team == second["id"],
                                                  TeamMember.member == "bob").execute()

    taken = api.simulate_post("/v1/benchmarks/league/teams", json={"name": "alpha"}, headers=token("dave"))
    assert taken.status_code == 409 and "already has a team" in taken.json["error"]["message"]
    full = invite(api, alice, first, "carol")
    assert full.status_code == 409 and "2 members" in full.json["error"]["message"]
    nobody = invite(api, carol, second, "nobody")
    assert (nobody.status_code, nobody.json["error"]["field"]) == (422, "user")
    bad = api.simulate_post("/v1/benchmarks/league/teams", json={"name": "\u202eevil"}, headers=token("erin"))
    assert (bad.status_code, bad.json["error"]["field"]) == (422, "name")

    create_benchmark(api, admin, benchmark_id="solo")  # settings.teams is off
    off = api.simulate_post("/v1/benchmarks/solo/teams", json={"name": "Delta"}, headers=carol)
    assert off.status_code == 409 and "does not use teams" in off.json["error"]["message"]
    # A manager creates an empty team and invites; an owner token may not on another's benchmark.
    empty = create_team(api, admin, "House")
    assert members(empty) == [] and empty["created_by"] == "admin"
    assert api.simulate_post("/v1/benchmarks/league/teams", json={"name": "Olga's"},
                             headers=token("olga", "owner")).status_code == 403


def test_members_share_the_team_quota(api, league, alice, bob, carol):
    league(quota={"limit": 2, "window": "utc_day"})
    team = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", team)
    first, second = submit(api, alice), submit(api, bob)
    assert first.status_code == second.status_code == 201
    assert first.json["submission"]["team"] == second.json["submission"]["team"] == team["id"]
    refused = submit(api, alice)
    assert (refused.status_code, refused.json["error"]["code"]) == (429, "quota_exceeded")
    assert "your team Alpha has used 2 of 2" in refused.json["error"]["message"]
    quota = api.simulate_get("/v1/benchmarks/league/quota", headers=bob).json
    assert (quota["used"], quota["remaining"], quota["team"]) == (2, 0, team["id"])
    # A participant in no team keeps a quota of their own.
    solo = submit(api, carol)
    assert solo.status_code == 201 and solo.json["submission"]["team"] is None
    assert api.simulate_get("/v1/benchmarks/league/quota", headers=carol).json["remaining"] == 1


def test_the_board_has_one_entry_per_team_named_by_it_when_the_benchmark_says_so(api, league, admin, alice, bob,
                                                                                 carol):
    league()
    team = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", team)
    scored(api, alice, 0.80, minutes_ago=3)
    best = scored(api, bob, 0.90, minutes_ago=2)
    scored(api, carol, 0.85, minutes_ago=1)
    result = board(api, carol)
    assert result["participants"] == 2 and result["rules"]["entrant"] == "team"
    assert [(e["rank"], e["participant"], e["score"], e["team"], e["submitted_by"]) for e in result["entries"]] == [
        (1, "Alpha", 0.90, {"id": team["id"], "name": "Alpha"}, "bob"), (2, "carol", 0.85, None, "carol")]
    assert result["entries"][0]["run_id"] == str(best.id)
    assert api.simulate_get(f"/v1/runs/{best.id}", headers=bob).json["team"] == team["id"]

    # The same runs on a board without teams: one entry per participant again.
    assert api.simulate_patch("/v1/benchmarks/league", headers=admin, json={"settings": {}}).status_code == 200
    plain = board(api, carol)
    assert plain["rules"]["entrant"] == "participant"
    assert [(e["participant"], e["team"]) for e in plain["entries"]] == [
        ("bob", None), ("carol", None), ("alice", None)]


def test_a_member_who_switches_team_leaves_past_runs_with_the_old_one(api, league, alice, bob, carol):
    league(quota={"limit": 3})
    alpha = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", alpha)
    scored(api, alice, 0.70, minutes_ago=30)
    old = scored(api, bob, 0.95, minutes_ago=20)
    before_switch = utcnow()
    assert api.simulate_post(f"/v1/teams/{alpha['id']}/leave", headers=bob).status_code == 204
    beta = create_team(api, carol, "Beta")
    join(api, carol, bob, "bob", beta)
    new = scored(api, bob, 0.60)

    entries = [(e["participant"], e["score"], e["submitted_by"], e["run_id"]) for e in board(api, alice)["entries"]]
    assert entries == [("Alpha", 0.95, "bob", str(old.id)), ("Beta", 0.60, "bob", str(new.id))]
    assert api.simulate_get(f"/v1/runs/{old.id}", headers=bob).json["team"] == alpha["id"]
    assert api.simulate_get(f"/v1/runs/{new.id}", headers=bob).json["team"] == beta["id"]
    assert [m["user"] for m in api.simulate_get(f"/v1/teams/{alpha['id']}", headers=alice).json["members"]] == [
        "alice"]
    # The board as it stood before the switch is unchanged by it.
    past = board(api, alice, at=before_switch.isoformat() + "Z")["entries"]
    assert [(e["participant"], e["score"]) for e in past] == [("Alpha", 0.95)]
    # Moving does not refill a quota: Beta counts bob's submissions of the day, made for Alpha too.
    quota = api.simulate_get("/v1/benchmarks/league/quota", headers=carol).json
    assert (quota["team"], quota["used"], quota["remaining"]) == (beta["id"], 2, 1)
    assert api.simulate_get("/v1/benchmarks/league/quota", headers=alice).json["used"] == 2  # her run and bob's old


def test_final_selections_are_the_teams(api, league, alice, bob):
    league(final_selections=1)
    team = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", team)
    mine, theirs = scored(api, alice, 0.8), scored(api, bob, 0.9)
    assert api.simulate_post(f"/v1/runs/{mine.id}/final", json={"selected": True}, headers=alice).status_code == 200
    refused = api.simulate_post(f"/v1/runs/{theirs.id}/final", json={"selected": True}, headers=bob)
    assert refused.status_code == 409 and "your team already selected 1 of 1" in refused.json["error"]["message"]


def test_migration_0009_adds_teams_and_the_submission_column_idempotently(migrated_database, db):
    from playhouse.migrate import PostgresqlMigrator

    from evaluator.storage.migrations import MIGRATIONS_DIR

    path = next(MIGRATIONS_DIR.glob("0009_*.py"))
    spec = importlib.util.spec_from_file_location("teams_migration", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    migrator = PostgresqlMigrator(migrated_database)
    with migrated_database.connection_context():
        indexes = {i.name for i in migrated_database.get_indexes("team_member")}
        script.up(migrator, migrated_database)  # 0001 built it all already: nothing changes
        script.down(migrator, migrated_database)
        assert not migrated_database.table_exists("team") and not migrated_database.table_exists("team_member")
        assert "team_id" not in {c.name for c in migrated_database.get_columns("submission")}
        script.up(migrator, migrated_database)
        script.up(migrator, migrated_database)
        assert "team_id" in {c.name for c in migrated_database.get_columns("submission")}
        assert {i.name for i in migrated_database.get_indexes("team_member")} == indexes
        assert script.ONE_TEAM_INDEX in indexes
        keys = migrated_database.get_foreign_keys("submission")
        assert any(k.column == "team_id" and k.dest_table == "team" for k in keys)


def test_concurrent_members_cannot_share_the_last_slot_nor_the_last_place(api, league, alice, bob, carol):
    league(quota={"limit": 1}, max_team_size=2)
    team = create_team(api, alice, "Alpha")
    for user in ("bob", "carol"):
        assert invite(api, alice, team, user).status_code == 201

    def together(calls) -> list[int]:
        barrier = threading.Barrier(len(calls))

        def call(function):
            barrier.wait()
            return function().status_code
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            return sorted(pool.map(call, calls))

    # bob and carol accept the one free place at once: one of them gets it.
    assert together([lambda: accept(api, bob, team), lambda: accept(api, carol, team)]) == [200, 409]
    joined = "bob" if ("bob", "accepted") in members(api.simulate_get(f"/v1/teams/{team['id']}",
                                                                      headers=alice).json) else "carol"
    second = {"bob": bob, "carol": carol}[joined]
    # The two members ask for the team's one submission at once: one grant, one 429.
    assert together([lambda: submit(api, alice), lambda: submit(api, second)] * 3) == [201] + [429] * 5
    assert Submission.select().where(Submission.team == team["id"]).count() == 1


def test_the_benchmark_page_shows_the_team_row_as_the_viewers_team(api, league, alice, bob, carol):
    from tests.integration.test_web_pages import cookie_header, sign_in

    league()
    team = create_team(api, alice, "Alpha")
    join(api, alice, bob, "bob", team)
    scored(api, alice, 0.80)
    best = scored(api, bob, 0.90)
    scored(api, carol, 0.85)

    def row_of(secret: str, name: str) -> str:
        page = api.simulate_get("/benchmarks/league", headers=cookie_header(sign_in(api, secret)))
        assert page.status_code == 200, page.text
        return next(row for row in page.text.split("<tr") if f'<th scope="row">{name}' in row)

    secrets = {}
    for user in ("alice", "bob"):
        secrets[user], _ = create_token(user, "participant")
    alpha_for_alice = row_of(secrets["alice"], "Alpha")
    assert 'class="mine"' in alpha_for_alice and "(your team)" in alpha_for_alice
    assert '<td class="num">2</td>' in alpha_for_alice  # the team's submissions, both members'
    assert f"/runs/{best.id}" not in alpha_for_alice  # bob's run: only he (and admins) may open it
    assert f"/runs/{best.id}" in row_of(secrets["bob"], "Alpha")
    assert "(you" not in row_of(secrets["alice"], "carol")
