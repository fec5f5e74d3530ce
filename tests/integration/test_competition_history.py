"""The freeze and the board's history through the API, on runs recorded in PostgreSQL, and migration 0006."""

from __future__ import annotations

import datetime
import importlib.util
import uuid

import pytest

from evaluator.storage.models import Benchmark, BenchmarkRevision, Run, Submission, isoformat, utcnow
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


def finished_run(owner: str, accuracy: float, finished_at: datetime.datetime, *, history: list | None = None,
                 baseline: bool = False) -> Run:
    submission = Submission.create(benchmark="iris", owner=owner, name=f"m{uuid.uuid4().hex[:6]}", version="1",
                                   bucket="b", object_key=f"bundles/iris/{owner}/{uuid.uuid4()}.csv",
                                   kind="predictions", baseline=baseline, status="uploaded")
    return Run.create(submission=submission, benchmark="iris", owner=owner, status="succeeded",
                      metrics={"metrics": {"accuracy": accuracy}}, metrics_history=history or [],
                      finished_at=finished_at)


def board(api, headers, **params) -> dict:
    response = api.simulate_get("/v1/benchmarks/iris/leaderboard", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json


@pytest.mark.parametrize("settings, field", [
    ({"freeze_before_close_s": 60}, "settings.freeze_before_close_s"),
    ({"submission_kinds": []}, "settings.submission_kinds"),
    ({"submission_kinds": ["models"]}, "settings.submission_kinds.0"),
    ({"freeze_at": "yesterday"}, "settings.freeze_at"),
])
def test_settings_are_checked(api, admin, settings, field):
    register_dataset_over_http(api, admin)
    response = api.simulate_post("/v1/benchmarks", headers=admin, json={
        "id": "iris", "dataset": "iris:1", "task": "classification", "settings": settings})
    assert response.status_code == 422, response.text
    assert response.json["error"]["field"] == field


def test_the_last_part_before_close_is_frozen_for_participants_and_live_for_managers(api, admin, alice):
    register_dataset_over_http(api, admin)
    now = utcnow()
    create_benchmark(api, admin, settings={"closes_at": (now + datetime.timedelta(hours=1)).isoformat() + "Z",
                                           "freeze_before_close_s": 2 * 3600})
    early = finished_run("bob", 0.61234567, now - datetime.timedelta(hours=2))
    finished_run("alice", 0.9, now - datetime.timedelta(minutes=5))        # inside the frozen window

    seen = board(api, alice)
    assert seen["frozen"] is True and seen["at"] == isoformat(now - datetime.timedelta(hours=1))
    assert [(e["participant"], e["run_id"], e["score"]) for e in seen["entries"]] == [
        ("bob", str(early.id), 0.6123)]                                        # rounded for a participant
    managed = board(api, admin)
    assert managed["frozen"] is False and [e["participant"] for e in managed["entries"]] == ["alice", "bob"]
    assert managed["entries"][1]["score"] == 0.61234567
    mine = api.simulate_get("/v1/runs", headers=alice).json["items"]
    assert [r["metrics"]["metrics"]["accuracy"] for r in mine] == [0.9]        # her own new score


def test_at_uses_the_documents_and_rules_then_in_force(api, admin, alice):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    t0 = utcnow() - datetime.timedelta(hours=3)
    BenchmarkRevision.update(changed_at=t0 - datetime.timedelta(hours=1)).execute()
    rescored_at = t0 + datetime.timedelta(hours=2)
    finished_run("alice", 0.7, t0, history=[{"metrics": {"metrics": {"accuracy": 0.5}},
                                             "replaced_at": isoformat(rescored_at)}])
    finished_run("bob", 0.6, t0 + datetime.timedelta(hours=1))
    finished_run("admin", 0.99, t0, baseline=True)
    changed = api.simulate_patch("/v1/benchmarks/iris", headers=admin,
                                 json={"primary_metric": "f1_macro", "settings": {"tie_breakers": ["accuracy"]}})
    assert changed.status_code == 200

    def at(instant: datetime.datetime) -> dict:
        return board(api, alice, at=instant.isoformat() + "Z")

    first = at(t0 + datetime.timedelta(minutes=30))
    assert [(e["participant"], e["rank"], e["score"]) for e in first["entries"]] == [
        ("admin", None, 0.99), ("alice", 1, 0.5)]
    assert first["participants"] == 1 and first["rules"]["metric"] == "accuracy"
    assert first["rules"]["tie_breakers"] == []
    second = at(t0 + datetime.timedelta(minutes=90))
    assert [(e["participant"], e["rank"], e["score"]) for e in second["entries"]] == [
        ("admin", None, 0.99), ("bob", 1, 0.6), ("alice", 2, 0.5)]
    third = at(rescored_at + datetime.timedelta(minutes=1))
    assert [(e["participant"], e["score"]) for e in third["entries"] if not e["baseline"]] == [
        ("alice", 0.7), ("bob", 0.6)]
    assert board(api, alice, at="1999-01-01T00:00:00Z")["entries"] == []
    # Now: the rules since the PATCH, by which the documents (accuracy only) rank nobody.
    assert board(api, alice)["rules"]["metric"] == "f1_macro"
    bad = api.simulate_get("/v1/benchmarks/iris/leaderboard", headers=alice, params={"at": "soon"})
    assert bad.status_code == 422 and bad.json["error"]["field"] == "at"


def test_migration_0006_adds_kinds_baselines_and_a_first_revision_once(migrated_database, db, api, admin):
    from playhouse.migrate import PostgresqlMigrator

    from evaluator.storage.migrations import MIGRATIONS_DIR

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    path = next(MIGRATIONS_DIR.glob("0006_*.py"))
    spec = importlib.util.spec_from_file_location("predictions_migration", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    migrator = PostgresqlMigrator(migrated_database)
    with migrated_database.connection_context():
        script.up(migrator, migrated_database)  # 0001 built it all already: nothing changes
        assert BenchmarkRevision.select().count() == 1
        script.down(migrator, migrated_database)
        columns = {c.name for c in migrated_database.get_columns("submission")}
        assert not {"kind", "baseline"} & columns and not migrated_database.table_exists("benchmark_revision")
        script.up(migrator, migrated_database)
        script.up(migrator, migrated_database)
        assert {"kind", "baseline"} <= {c.name for c in migrated_database.get_columns("submission")}
        revisions = list(BenchmarkRevision.select())
        assert [(r.benchmark_id, r.primary_metric, r.changed_at) for r in revisions] == [
            ("iris", "accuracy", Benchmark.get_by_id("iris").created_at)]


def test_baselines_spend_no_quota_and_only_managers_submit_them(api, admin, alice):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, quota={"limit": 1}, settings={"submission_kinds": ["bundle", "predictions"]})
    for name in ("majority", "logreg"):
        response = api.simulate_post("/v1/benchmarks/iris/submissions", headers=admin,
                                     json={"name": name, "filename": "p.csv", "baseline": True})
        assert response.status_code == 201, response.text
        assert response.json["submission"]["baseline"] is True
    assert api.simulate_get("/v1/benchmarks/iris/quota", headers=admin).json["used"] == 0
    refused = api.simulate_post("/v1/benchmarks/iris/submissions", headers=alice,
                                json={"name": "m", "filename": "p.csv", "baseline": True})
    assert refused.status_code == 403
    for filename, kind in (("p.CSV", "predictions"), ("m.zip", "bundle")):
        granted = api.simulate_post("/v1/benchmarks/iris/submissions", headers=alice,
                                    json={"name": "m", "filename": filename})
        if kind == "predictions":
            assert granted.status_code == 201 and granted.json["submission"]["kind"] == kind, granted.text
        else:  # her one submission of the window is spent
            assert granted.status_code == 429, granted.text
