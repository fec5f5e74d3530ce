"""Isolation: for every route that takes an id, participant B gets 404 for participant A's objects.

The table below must name every route of the app; a new route without an
authorization case makes test_every_route_has_an_authorization_case fail.
"""

from __future__ import annotations

import falcon.inspect
import pytest

from evaluator import runs
from evaluator.storage.models import Submission
from tests.integration.helpers import create_benchmark, register_dataset_over_http
from tests.integration.test_web_pages import PAGE_CASES, PAGES_WITHOUT_ID

pytestmark = pytest.mark.integration

# (method, route) -> how B (another participant) is answered for A's object, or why the route has no owner.
CASES = {
    ("GET", "/v1/submissions/{submission_id}"): 404,
    ("POST", "/v1/submissions/{submission_id}/complete"): 404,
    ("GET", "/v1/runs/{run_id}"): 404,
    ("GET", "/v1/runs/{run_id}/logs"): 404,
    ("POST", "/v1/runs/{run_id}/cancel"): 404,
    ("GET", "/v1/runs/{run_id}/predictions"): 404,
    ("POST", "/v1/runs/{run_id}/final"): 404,
    ("GET", "/v1/runs/{run_id}/plots"): 404,
    ("GET", "/v1/runs/{run_id}/plots/{name}"): 404,
    ("PATCH", "/v1/runs/{run_id}"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}"): 404,               # A's private benchmark
    ("PATCH", "/v1/benchmarks/{benchmark_id}"): 404,
    ("POST", "/v1/benchmarks/{benchmark_id}/rescore"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/submissions"): 404,
    ("POST", "/v1/benchmarks/{benchmark_id}/submissions"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/leaderboard"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/quota"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/features"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/compare"): 404,        # A's runs, on the open benchmark
    ("GET", "/v1/benchmarks/{benchmark_id}/phases"): 404,
    ("POST", "/v1/benchmarks/{benchmark_id}/phases"): 404,
    ("POST", "/v1/benchmarks/{benchmark_id}/phases/{phase}/migrate"): 404,
    ("GET", "/v1/datasets/{dataset_id}"): 403,                    # admins only: datasets hold labels
    ("DELETE", "/v1/tokens/{token_id}"): 403,                     # admins only
    ("GET", "/v1/runs/{run_id}/events"): 404,
    ("GET", "/v1/webhooks/{webhook_id}"): 404,                    # A's subscription
    ("DELETE", "/v1/webhooks/{webhook_id}"): 404,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): 404,
    ("GET", "/v1/benchmarks/{benchmark_id}/teams"): 404,          # teams of A's private benchmark
    ("POST", "/v1/benchmarks/{benchmark_id}/teams"): 404,
    ("GET", "/v1/teams/{team_id}"): 404,                          # a team of A's private benchmark
    ("POST", "/v1/teams/{team_id}/invitations"): 404,
    ("POST", "/v1/teams/{team_id}/invitations/accept"): 404,
    ("POST", "/v1/teams/{team_id}/leave"): 404,
    ("DELETE", "/v1/teams/{team_id}/members/{user}"): 404,
}
NO_ID = {  # routes without an owned id, and who may call them
    ("GET", "/health"): "anyone", ("GET", "/metrics"): "anyone", ("GET", "/openapi.json"): "anyone",
    ("GET", "/docs"): "anyone", ("GET", "/docs/{asset}"): "anyone", ("GET", "/v1/datasets"): "publishers: own",
    ("POST", "/v1/datasets"): "publishers",
    ("GET", "/v1/benchmarks"): "visible ones", ("POST", "/v1/benchmarks"): "admin",
    ("GET", "/v1/runs"): "own runs", ("POST", "/v1/tokens"): "admin",
    ("POST", "/v1/events/s3"): "store token", ("HEAD", "/v1/events/s3"): "store probe",
    ("GET", "/v1/webhooks"): "own subscriptions", ("POST", "/v1/webhooks"): "token holders",
}


def app_routes(app) -> set[tuple[str, str]]:
    return {(m.method, r.path) for r in falcon.inspect.inspect_routes(app) for m in r.methods if not m.internal}


def test_every_route_has_an_authorization_case(api):
    missing = app_routes(api.app) - set(CASES) - set(NO_ID) - set(PAGE_CASES) - set(PAGES_WITHOUT_ID)
    assert not missing, f"routes without an authorization test: {sorted(missing)}"


@pytest.fixture
def objects_of_a(api, admin, db):
    """Objects owned by participant A (alice): a private benchmark she owns, a submission, a run, a token."""
    from evaluator.storage.models import Benchmark
    from evaluator.tokens import create_token

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, benchmark_id="private-a", visibility="private", settings={"teams": True})
    Benchmark.update(owner="alice").where(Benchmark.id == "private-a").execute()
    create_benchmark(api, admin, benchmark_id="open")
    secret, token = create_token("alice", "participant")
    headers = {"Authorization": f"Bearer {secret}"}
    submission = api.simulate_post("/v1/benchmarks/open/submissions", json={"name": "m"}, headers=headers).json
    run, _ = runs.create_or_get_run(Submission.get_by_id(submission["submission"]["id"]))
    dataset_id = api.simulate_get("/v1/datasets/iris:1", headers=admin).json["id"]
    # A public address literal: nothing is resolved or sent (no run of hers ends here).
    hook = api.simulate_post("/v1/webhooks", headers=headers, json={"url": "https://1.1.1.1/a",
                                                                    "scope": "participant"})
    assert hook.status_code == 201, hook.text
    team = api.simulate_post("/v1/benchmarks/private-a/teams", headers=headers, json={"name": "A team"})
    assert team.status_code == 201, team.text
    return {"submission_id": submission["submission"]["id"], "run_id": str(run.id), "benchmark_id": "private-a",
            "dataset_id": dataset_id, "token_id": str(token.id), "name": "roc",
            "webhook_id": hook.json["id"], "team_id": team.json["id"], "user": "alice", "phase": "dev"}


@pytest.mark.parametrize("method, route", sorted(CASES))
def test_another_participant_cannot_reach_a_participants_object(api, objects_of_a, bob, alice, method, route):
    path = route.format(**objects_of_a)
    query = None
    if route.endswith("/compare"):  # two runs of A's on a benchmark B sees
        path, query = "/v1/benchmarks/open/compare", f"a={objects_of_a['run_id']}&b={objects_of_a['run_id']}"
    response = api.simulate_request(method, path, headers=bob,
                                    json={"name": "x", "parts": [], "user": "bob", "slug": "x"}, query_string=query)
    assert response.status_code == CASES[(method, route)], (path, response.text)
    assert set(response.json["error"]) >= {"code", "message"}
    if CASES[(method, route)] == 404 and method == "GET" and not route.endswith("/events"):  # a stream waits
        # The owner does reach it (the 404 is about B, not about the route); a queued run has no artifacts yet.
        has_artifacts = route.endswith(("/logs", "/predictions", "/plots/{name}", "/compare"))
        owner = api.simulate_request(method, path, headers=alice, query_string=query)
        assert owner.status_code == 200 or (has_artifacts and "no " in owner.json["error"]["message"])
