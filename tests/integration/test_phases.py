"""Benchmark phases through HTTP: windows, per-phase boards, quotas and visibility, and moving runs on."""

from __future__ import annotations

import datetime

import pytest

from evaluator import runs
from evaluator.storage.models import Run, Submission, utcnow
from tests.integration.helpers import create_benchmark, iris_like, register_dataset_over_http
from tests.integration.test_competition import doc

pytestmark = pytest.mark.integration


def later(days: float) -> str:
    return (utcnow() + datetime.timedelta(days=days)).isoformat() + "Z"


@pytest.fixture
def phased(api, admin):
    """Datasets iris:1 (dev) and iris-final:1, and a maker of benchmark `comp` with a dev and a final phase."""
    register_dataset_over_http(api, admin)
    features, labels = iris_like(90, seed=4)
    register_dataset_over_http(api, admin, name="iris-final", features=features, labels=labels)

    def make(dev: dict | None = None, final: dict | None = None, **extra) -> dict:
        phases = [{"slug": "dev", "closes_at": later(1), **(dev or {})},
                  {"slug": "final", "dataset": "iris-final:1", "primary_metric": "f1_macro",
                   "metrics": ["f1_macro", "balanced_accuracy"], "opens_at": later(1), **(final or {})}]
        return create_benchmark(api, admin, benchmark_id="comp", phases=phases, **extra)
    return make


def grant(api, headers, **body):
    return api.simulate_post("/v1/benchmarks/comp/submissions", json={"name": "m", **body}, headers=headers)


def scored_run(api, headers, minutes_ago: int = 0, **metrics) -> Run:
    """A submission granted over HTTP (so it lands in the open phase) and its run as a worker leaves it."""
    response = grant(api, headers)
    assert response.status_code == 201, response.text
    run, _ = runs.create_or_get_run(Submission.get_by_id(response.json["submission"]["id"]))
    Run.update(status="succeeded", metrics=doc(**metrics),
               finished_at=utcnow() - datetime.timedelta(minutes=minutes_ago)).where(Run.id == run.id).execute()
    return Run.get_by_id(run.id)


def board(api, headers, **params) -> dict:
    response = api.simulate_get("/v1/benchmarks/comp/leaderboard", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json


def test_a_benchmark_without_phases_is_one_implicit_phase(api, admin, alice):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, benchmark_id="comp")
    listed = api.simulate_get("/v1/benchmarks/comp/phases", headers=alice)
    assert (listed.status_code, listed.json) == (200, {"items": [], "current": None})
    run = scored_run(api, alice, accuracy=0.8)
    assert run.phase_id is None
    assert api.simulate_get(f"/v1/runs/{run.id}", headers=alice).json["phase"] is None
    result = board(api, alice)
    assert result["phase"] is None and [e["participant"] for e in result["entries"]] == ["alice"]
    assert api.simulate_get("/v1/benchmarks/comp/leaderboard", headers=alice,
                            params={"phase": "dev"}).status_code == 404
    assert grant(api, alice, phase="dev").status_code == 404


def test_submissions_go_to_the_open_phase_and_each_phase_ranks_its_own_runs(api, phased, admin, alice, bob):
    phased(dev={"quota": {"limit": 2}, "limits": {"max_bundle_bytes": 1000}}, final={"quota": {"limit": 1}})
    listed = api.simulate_get("/v1/benchmarks/comp/phases", headers=alice).json
    assert [(p["slug"], p["open"], p["dataset"], p["primary_metric"]) for p in listed["items"]] == [
        ("dev", True, "iris:1", "accuracy"), ("final", False, "iris-final:1", "f1_macro")]
    assert listed["current"] == "dev"
    assert listed["items"][1]["metrics"] == ["f1_macro", "balanced_accuracy"]

    a1 = scored_run(api, alice, accuracy=0.7, minutes_ago=5)
    scored_run(api, bob, accuracy=0.9)
    assert api.simulate_get(f"/v1/runs/{a1.id}", headers=alice).json["phase"] == "dev"
    # The final phase is not open yet: naming it is refused, and the dev quota counts the dev phase's only.
    early = grant(api, alice, phase="final")
    assert early.status_code == 409 and "not open" in early.json["error"]["message"]
    reference = grant(api, admin, phase="final", baseline=True)  # a manager's baseline, set up beforehand
    assert reference.status_code == 201, reference.text
    assert Submission.get_by_id(reference.json["submission"]["id"]).phase.slug == "final"
    assert api.simulate_get("/v1/benchmarks/comp/quota", headers=alice).json["used"] == 1
    too_large = grant(api, alice, size=2000, method="put")  # the dev phase's own limit
    assert too_large.status_code == 413 and "1000" in too_large.json["error"]["message"]
    assert grant(api, alice).status_code == 201
    over = grant(api, alice)
    assert over.status_code == 429, over.text

    dev = board(api, alice)
    assert dev["phase"] == "dev" and dev["rules"]["metric"] == "accuracy"
    assert [(e["participant"], e["score"]) for e in dev["entries"]] == [("bob", 0.9), ("alice", 0.7)]
    final = board(api, alice, phase="final")
    assert (final["phase"], final["rules"]["metric"], final["entries"]) == ("final", "f1_macro", [])
    assert api.simulate_get("/v1/benchmarks/comp/leaderboard", headers=alice,
                            params={"phase": "nope"}).status_code == 404
    page = api.simulate_get("/benchmarks/comp")  # the web page shows the current phase's board
    assert page.status_code == 200 and "bob" in page.text


def test_once_the_final_phase_opens_it_is_the_current_one_and_takes_the_submissions(api, phased, admin, alice):
    phased(dev={"opens_at": later(-2), "closes_at": later(-1)}, final={"opens_at": later(-1)})
    assert api.simulate_get("/v1/benchmarks/comp/phases", headers=alice).json["current"] == "final"
    run = scored_run(api, alice, f1_macro=0.6)
    assert api.simulate_get(f"/v1/runs/{run.id}", headers=alice).json["phase"] == "final"
    assert board(api, alice)["phase"] == "final" and board(api, alice)["entries"][0]["score"] == 0.6
    closed = grant(api, alice, phase="dev")
    assert closed.status_code == 409 and "dev" in closed.json["error"]["message"]
    assert board(api, alice, phase="dev")["closed"] is True


def test_a_private_phase_is_hidden_from_participants(api, phased, admin, alice):
    phased(final={"visibility": "private"})
    assert [p["slug"] for p in api.simulate_get("/v1/benchmarks/comp/phases", headers=alice).json["items"]] == ["dev"]
    assert [p["slug"] for p in api.simulate_get("/v1/benchmarks/comp/phases", headers=admin).json["items"]] == [
        "dev", "final"]
    assert api.simulate_get("/v1/benchmarks/comp/leaderboard", headers=alice,
                            params={"phase": "final"}).status_code == 404
    assert board(api, admin, phase="final")["phase"] == "final"


def test_phase_definitions_are_validated(api, phased, admin, alice):
    """`phased` registered iris:1 and iris-final:1; each benchmark here is defined by hand."""
    def create(phases):
        return api.simulate_post("/v1/benchmarks", headers=admin, json={
            "id": "v", "dataset": "iris:1", "task": "classification", "phases": phases})

    bad_metric = create([{"slug": "dev", "metrics": ["rmse"]}])
    assert bad_metric.status_code == 422 and bad_metric.json["error"]["field"] == "metrics"
    duplicate = create([{"slug": "dev"}, {"slug": "dev"}])
    assert duplicate.status_code == 409
    backwards = create([{"slug": "dev", "opens_at": later(2), "closes_at": later(1)}])
    assert backwards.status_code == 422 and backwards.json["error"]["field"] == "phases.closes_at"
    assert api.simulate_get("/v1/benchmarks/v", headers=admin).status_code == 404  # nothing half-made
    other_task = create([{"slug": "dev"}, {"slug": "reg", "task": "regression"}])
    assert other_task.status_code == 201, other_task.text
    reg = api.simulate_get("/v1/benchmarks/v/phases", headers=admin).json["items"][1]
    assert (reg["task"], reg["primary_metric"], "rmse" in reg["metrics"], "accuracy" in reg["metrics"]) == (
        "regression", "rmse", True, False)
    added = api.simulate_post("/v1/benchmarks/v/phases", headers=admin, json={"slug": "extra", "limits": {
        "timeout_s": 60}})
    assert added.status_code == 201 and added.json["ordinal"] == 2 and added.json["limits"]["timeout_s"] == 60
    assert api.simulate_post("/v1/benchmarks/v/phases", headers=alice, json={"slug": "mine"}).status_code == 403


def test_migration_moves_each_participants_selection_or_best_run_once(api, phased, admin, alice, bob, sent):
    phased(settings={"final_selections": 1})
    a_best = scored_run(api, alice, accuracy=0.95, minutes_ago=30)
    a_chosen = scored_run(api, alice, accuracy=0.80, minutes_ago=20)
    scored_run(api, bob, accuracy=0.70, minutes_ago=15)
    b_best = scored_run(api, bob, accuracy=0.85, minutes_ago=10)
    selected = api.simulate_post(f"/v1/runs/{a_chosen.id}/final", json={"selected": True}, headers=alice)
    assert selected.status_code == 200, selected.text

    assert api.simulate_post("/v1/benchmarks/comp/phases/dev/migrate", headers=alice).status_code == 403
    queued_before = list(sent.runs)
    moved = api.simulate_post("/v1/benchmarks/comp/phases/dev/migrate", headers=admin)
    assert moved.status_code == 202, moved.text
    assert (moved.json["from"], moved.json["to"], moved.json["existing"]) == ("dev", "final", [])
    created = moved.json["created"]
    assert len(created) == 2 and sent.runs == queued_before + created  # queued for a worker
    new_runs = {str(run.migrated_from_id): run for run in Run.select().where(Run.id.in_(created))}
    assert set(new_runs) == {str(a_chosen.id), str(b_best.id)}  # alice's selection (not her best), bob's best
    assert str(a_best.id) not in new_runs
    for source, run in new_runs.items():
        assert run.status == "queued" and run.metrics is None
        assert run.submission_id == Run.get_by_id(source).submission_id  # the same bundle, evaluated again
        shown = api.simulate_get(f"/v1/runs/{run.id}", headers=admin).json
        assert (shown["phase"], shown["migrated_from"]) == ("final", source)
    # The dev board is unchanged; the final board waits for the worker's results.
    assert len(board(api, admin)["entries"]) == 2
    assert board(api, admin, phase="final")["entries"] == []

    again = api.simulate_post("/v1/benchmarks/comp/phases/dev/migrate", headers=admin)
    assert again.status_code == 202 and again.json["created"] == []
    assert sorted(again.json["existing"]) == sorted(created)
    assert Run.select().where(Run.migrated_from.is_null(False)).count() == 2
    assert sent.runs == queued_before + created  # nothing queued twice

    # Once scored by the final phase's rules (the worker's part: tests/e2e/test_phases.py), they rank there.
    for run_id, score in zip(created, (0.5, 0.6)):
        Run.update(status="succeeded", metrics=doc(f1_macro=score), finished_at=utcnow()).where(
            Run.id == run_id).execute()
    final = board(api, alice, phase="final")
    assert final["rules"]["metric"] == "f1_macro" and [e["score"] for e in final["entries"]] == [0.6, 0.5]
    last = api.simulate_post("/v1/benchmarks/comp/phases/final/migrate", headers=admin)
    assert last.status_code == 409 and "last phase" in last.json["error"]["message"]


def test_a_migrated_run_is_scored_with_the_next_phases_task_and_metrics(api, phased, admin, alice):
    """Codabench #2193: migrated runs were scored with the old phase's task. Here the run's phase decides."""
    from evaluator import phases as phase_rules
    from evaluator.settings import Scoring

    phased(final={"task": "regression", "primary_metric": "rmse", "metrics": ["rmse", "mae"]})
    source = scored_run(api, alice, accuracy=0.9)
    created = api.simulate_post("/v1/benchmarks/comp/phases/dev/migrate", headers=admin).json["created"]
    migrated = Run.get_by_id(created[0])
    benchmark = migrated.benchmark
    phase = phase_rules.phase_of_run(migrated)
    dataset = phase_rules.dataset_of(benchmark, phase)
    scoring = Scoring.of(phase_rules.effective(benchmark, phase), dataset)
    assert (scoring.task, scoring.metrics, scoring.primary_metric, dataset.ref) == (
        "regression", ("rmse", "mae"), "rmse", "iris-final:1")
    old = Scoring.of(phase_rules.effective(benchmark, phase_rules.phase_of_run(source)),
                     phase_rules.dataset_of(benchmark, phase_rules.phase_of_run(source)))
    assert (old.task, old.primary_metric) == ("classification", "accuracy")


def test_migration_0008_keeps_one_own_run_per_submission_and_runs_twice(migrated_database, api, phased, alice):
    import importlib.util

    import peewee
    from playhouse.migrate import PostgresqlMigrator

    from evaluator.storage.migrations import MIGRATIONS_DIR

    phased()
    run = scored_run(api, alice, accuracy=0.9)
    path = next(MIGRATIONS_DIR.glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("phases_migration", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    migrator = PostgresqlMigrator(migrated_database)
    with migrated_database.connection_context():
        script.up(migrator, migrated_database)  # 0001 built it all already: nothing changes
        script.down(migrator, migrated_database)
        assert not migrated_database.table_exists("phase")
        assert "phase_id" not in {c.name for c in migrated_database.get_columns("run")}
        assert [i.unique for i in migrated_database.get_indexes("run") if i.name == "run_submission_id"] == [True]
        script.up(migrator, migrated_database)
        script.up(migrator, migrated_database)
        indexes = {i.name: i.unique for i in migrated_database.get_indexes("run")}
        assert indexes["run_submission_id"] is False and indexes["run_submission_original"] is True
        assert Run.get_by_id(run.id).phase_id is None  # the old run is kept; the phase table started empty
        # A second own run of one submission is still refused; a migrated one (another phase) is not.
        with pytest.raises(peewee.IntegrityError), migrated_database.atomic():
            Run.create(submission=run.submission_id, benchmark="comp", owner="alice")
        migrated = Run.create(submission=run.submission_id, benchmark="comp", owner="alice", migrated_from=run.id)
        assert migrated.migrated_from_id == run.id


def test_on_a_teams_benchmark_migration_moves_one_run_per_team(api, phased, admin, alice, bob):
    phased(settings={"teams": True})
    team = api.simulate_post("/v1/benchmarks/comp/teams", headers=alice, json={"name": "Descenders"}).json["id"]
    assert api.simulate_post(f"/v1/teams/{team}/invitations", headers=alice, json={"user": "bob"}).status_code == 201
    assert api.simulate_post(f"/v1/teams/{team}/invitations/accept", headers=bob).status_code == 200
    scored_run(api, alice, accuracy=0.7)
    best = scored_run(api, bob, accuracy=0.9)
    moved = api.simulate_post("/v1/benchmarks/comp/phases/dev/migrate", headers=admin).json
    assert [str(Run.get_by_id(r).migrated_from_id) for r in moved["created"]] == [str(best.id)]  # the team's best
