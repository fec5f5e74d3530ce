"""Competition rules through HTTP with two participants and an admin: ranking, ties, finals, close, logs."""

from __future__ import annotations

import datetime
import uuid

import pytest

from evaluator.storage.models import Run, Submission, utcnow
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


def doc(**metrics) -> dict:
    return {"metrics": metrics, "primary_metric": {"name": "accuracy", "value": metrics.get("accuracy"),
                                                   "ci": {"low": 0.0, "high": 1.0}}}


def finished_run(owner: str, benchmark: str = "comp", minutes_ago: int = 0, private: dict | None = None,
                 **metrics) -> Run:
    """A succeeded run as the pipeline leaves it (metrics documents, finish time)."""
    submission = Submission.create(benchmark=benchmark, owner=owner, name="m", version=uuid.uuid4().hex[:6],
                                   bucket="b", object_key=f"bundles/{uuid.uuid4()}.tar.gz", status="uploaded")
    return Run.create(submission=submission, benchmark=benchmark, owner=owner, status="succeeded",
                      metrics=doc(**metrics), private_metrics=doc(**private) if private else None,
                      finished_at=utcnow() - datetime.timedelta(minutes=minutes_ago))


@pytest.fixture
def comp(api, admin):
    register_dataset_over_http(api, admin)

    def make(**settings):
        return create_benchmark(api, admin, benchmark_id="comp", settings=settings)
    return make


def board(api, headers, **params) -> dict:
    response = api.simulate_get("/v1/benchmarks/comp/leaderboard", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json


def test_best_run_per_participant_ranked_with_tie_breakers_and_equal_ranks(api, comp, alice, admin):
    comp(tie_breakers=["f1_macro"])
    finished_run("alice", accuracy=0.80, f1_macro=0.70, minutes_ago=30)
    finished_run("alice", accuracy=0.90, f1_macro=0.60, minutes_ago=20)   # alice's best
    finished_run("bob", accuracy=0.90, f1_macro=0.75, minutes_ago=10)     # same accuracy, better tie-breaker
    finished_run("carol", accuracy=0.90, f1_macro=0.60, minutes_ago=5)    # ties alice exactly, finished later
    finished_run("dave", accuracy=0.50, f1_macro=0.99)
    result = board(api, alice)
    ranking = [(e["rank"], e["participant"], e["score"]) for e in result["entries"]]
    assert ranking == [(1, "bob", 0.90), (2, "alice", 0.90), (2, "carol", 0.90), (4, "dave", 0.50)]
    assert result["rules"]["tie_breakers"] == [{"metric": "f1_macro", "direction": "maximize"}]
    assert result["entries"][0]["ci"] == {"low": 0.0, "high": 1.0}
    assert result["view"] == "public"


def test_private_scores_stay_hidden_until_close_then_decide_over_final_selections(api, comp, alice, bob, admin):
    comp(final_selections=1, private_fraction=0.5)
    a1 = finished_run("alice", accuracy=0.95, private={"accuracy": 0.70}, minutes_ago=20)
    a2 = finished_run("alice", accuracy=0.85, private={"accuracy": 0.90}, minutes_ago=10)
    finished_run("bob", accuracy=0.90, private={"accuracy": 0.80})

    # While open: public ranking; no endpoint gives a participant a private score.
    assert [e["participant"] for e in board(api, alice)["entries"]] == ["alice", "bob"]
    assert board(api, alice, view="private")["view"] == "public"
    assert api.simulate_get(f"/v1/runs/{a1.id}", headers=alice).json["private_metrics"] is None
    assert all(r["private_metrics"] is None for r in api.simulate_get("/v1/runs", headers=alice).json["items"])
    assert api.simulate_get(f"/v1/runs/{a1.id}", headers=admin).json["private_metrics"]["metrics"]["accuracy"] == 0.70

    # Alice selects her second run as final; a second selection is over the limit.
    selected = api.simulate_post(f"/v1/runs/{a2.id}/final", json={"selected": True}, headers=alice)
    assert selected.status_code == 200 and selected.json["final"] is True
    over = api.simulate_post(f"/v1/runs/{a1.id}/final", json={"selected": True}, headers=alice)
    assert (over.status_code, over.json["error"]["code"]) == (409, "conflict")
    assert api.simulate_post(f"/v1/runs/{a2.id}/final", json={}, headers=bob).status_code == 404

    # At close the private part decides: alice's final run (0.90) beats bob's auto-selected best (0.80).
    past = (datetime.datetime.utcnow() - datetime.timedelta(minutes=1)).isoformat()
    closed = api.simulate_patch("/v1/benchmarks/comp", headers=admin,
                                json={"settings": {"final_selections": 1, "private_fraction": 0.5, "closes_at": past}})
    assert closed.status_code == 200 and closed.json["closed"] is True
    final = board(api, bob)
    assert final["view"] == "private"
    assert [(e["participant"], e["score"], e["run_id"]) for e in final["entries"]] == [
        ("alice", 0.90, str(a2.id)), ("bob", 0.80, final["entries"][1]["run_id"])]
    assert api.simulate_get(f"/v1/runs/{a1.id}", headers=alice).json["private_metrics"]["metrics"]["accuracy"] == 0.70
    # Closed: no new submissions, selections frozen.
    refused = api.simulate_post("/v1/benchmarks/comp/submissions", json={"name": "late"}, headers=alice)
    assert (refused.status_code, refused.json["error"]["code"]) == (409, "conflict")
    assert api.simulate_post(f"/v1/runs/{a1.id}/final", json={}, headers=alice).status_code == 409


def test_a_benchmark_not_yet_open_refuses_submissions(api, comp, alice):
    comp(opens_at=(datetime.datetime.utcnow() + datetime.timedelta(days=1)).isoformat() + "Z")
    refused = api.simulate_post("/v1/benchmarks/comp/submissions", json={"name": "early"}, headers=alice)
    assert refused.status_code == 409 and "opens at" in refused.json["error"]["message"]


def test_owner_role_publishes_and_manages_only_their_benchmarks(api, db, admin, alice):
    from evaluator.tokens import create_token

    register_dataset_over_http(api, admin)
    secret, _ = create_token("olga", "owner")
    olga = {"Authorization": f"Bearer {secret}"}
    register_dataset_over_http(api, olga, name="olgas-data")  # an owner attaches only her own datasets
    created = api.simulate_post("/v1/benchmarks", headers=olga, json={"id": "olgas", "dataset": "olgas-data:1",
                                                                      "task": "classification"})
    assert created.status_code == 201 and created.json["owner"] == "olga"
    assert api.simulate_patch("/v1/benchmarks/olgas", headers=olga, json={"primary_metric": "f1_macro"}).json[
        "primary_metric"] == "f1_macro"
    create_benchmark(api, admin, benchmark_id="admins")
    assert api.simulate_patch("/v1/benchmarks/admins", headers=olga, json={}).status_code == 403
    assert api.simulate_post("/v1/benchmarks", headers=alice, json={"id": "x", "dataset": "iris:1",
                                                                    "task": "classification"}).status_code == 403
    # Tokens are revocable: a revoked token is refused at once.
    issued = api.simulate_post("/v1/tokens", headers=admin, json={"owner": "temp", "role": "participant"}).json
    temp = {"Authorization": f"Bearer {issued['token']}"}
    assert api.simulate_get("/v1/benchmarks", headers=temp).status_code == 200
    assert api.simulate_delete(f"/v1/tokens/{issued['id']}", headers=admin).status_code == 204
    assert api.simulate_get("/v1/benchmarks", headers=temp).status_code == 401


def test_rescore_queues_every_succeeded_run_for_managers_only(api, comp, admin, alice, sent):
    comp()
    run = finished_run("alice", accuracy=0.9)
    Run.update(results_prefix=f"results/comp/{run.id}/").where(Run.id == run.id).execute()
    finished_run("bob", accuracy=0.8)  # no stored predictions: nothing to re-score
    assert api.simulate_post("/v1/benchmarks/comp/rescore", headers=alice).status_code == 403
    response = api.simulate_post("/v1/benchmarks/comp/rescore", headers=admin)
    assert response.status_code == 202 and sent.rescores == [str(run.id)]


@pytest.mark.parametrize("policy, expected", [("own", 200), ("tail", 200), ("none", 403)])
def test_log_policy_decides_what_a_participant_reads(api, comp, alice, admin, blobs, config, policy, expected):
    comp(log_policy=policy)
    run = finished_run("alice", accuracy=0.9)
    prefix = f"results/comp/{run.id}/"
    Run.update(results_prefix=prefix).where(Run.id == run.id).execute()
    log = b"HEAD" + b"x" * 10_000 + b"TAIL"
    blobs.put_bytes(config.results_bucket, prefix + "sandbox.log", log)
    response = api.simulate_get(f"/v1/runs/{run.id}/logs", headers=alice)
    assert response.status_code == expected
    if policy == "own":
        assert response.content == log
    if policy == "tail":
        assert response.content.endswith(b"TAIL") and not response.content.startswith(b"HEAD")
    assert api.simulate_get(f"/v1/runs/{run.id}/logs", headers=admin).content == log  # managers see it all


def test_visibility_public_to_anyone_participants_to_token_holders_private_to_managers(api, admin, alice):
    register_dataset_over_http(api, admin)
    for benchmark_id, visibility in (("pub", "public"), ("members", "participants"), ("secret", "private")):
        create_benchmark(api, admin, benchmark_id=benchmark_id, visibility=visibility)
    anonymous = {b["id"] for b in api.simulate_get("/v1/benchmarks").json["items"]}
    assert anonymous == {"pub"}
    assert api.simulate_get("/v1/benchmarks/pub/leaderboard").status_code == 200
    assert api.simulate_get("/v1/benchmarks/members").status_code == 404
    assert {b["id"] for b in api.simulate_get("/v1/benchmarks", headers=alice).json["items"]} == {"pub", "members"}
    assert api.simulate_get("/v1/benchmarks/secret", headers=alice).status_code == 404
    assert api.simulate_get("/v1/benchmarks/secret", headers=admin).status_code == 200
    bad = api.simulate_get("/v1/benchmarks", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401  # a wrong token is refused, not treated as anonymous
