"""Is #1 really better than #2? Ties on the board, GET /compare, and the minimum submission interval, over HTTP."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pytest

from evaluator.storage.models import utcnow
from tests.integration.board_runs import binary_dataset, scored_run
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


@pytest.fixture
def thousand(api, admin):
    """A 1,000-row binary dataset and its labels."""
    features, labels = binary_dataset(1000, seed=3)
    register_dataset_over_http(api, admin, name="bin", features=features, labels=labels)
    return labels


def predictions(labels, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = labels.column("target").to_numpy()
    return np.where(rng.random(len(truth)) < accuracy, truth, 1 - truth)


def test_two_runs_differing_on_one_row_of_1000_share_a_rank_and_compare_says_why(
        api, admin, alice, bob, thousand, blobs, config):
    create_benchmark(api, admin, benchmark_id="sig", dataset="bin:1", settings={"significance_level": 0.05})
    now = utcnow()
    first = predictions(thousand, 0.85, seed=1)
    second = first.copy()
    right = np.flatnonzero(first == thousand.column("target").to_numpy())[0]
    second[right] = 1 - second[right]  # bob errs on one more row of the 1,000
    a = scored_run("sig", "alice", thousand, first, blobs=blobs, config=config,
                   finished_at=now - datetime.timedelta(minutes=3))
    b = scored_run("sig", "bob", thousand, second, blobs=blobs, config=config,
                   finished_at=now - datetime.timedelta(minutes=2))
    scored_run("sig", "carol", thousand, predictions(thousand, 0.6, seed=2), blobs=blobs, config=config,
               finished_at=now - datetime.timedelta(minutes=1))

    board = api.simulate_get("/v1/benchmarks/sig/leaderboard", headers=alice).json
    rows = [(e["rank"], e["participant"], e["score"], e["tied_with_next"]) for e in board["entries"]]
    assert rows[0][:2] == (1, "alice") and rows[1][:2] == (1, "bob")  # shown tied, in score order
    assert rows[0][2] - rows[1][2] == pytest.approx(0.001)
    assert rows[0][3] is True and rows[1][3] is False and rows[2][:2] == (3, "carol")
    assert board["entries"][0]["p_value_vs_next"] == pytest.approx(0.5)
    assert board["entries"][0]["test_vs_next"] == "mcnemar_mid_p"
    assert board["entries"][1]["p_value_vs_next"] < 0.001  # bob (0.85) vs carol (0.6): a real difference
    assert board["rules"]["significance"]["level"] == 0.05
    # ... and the page says so beside the shared rank
    page = api.simulate_get("/benchmarks/sig", headers={"Accept": "text/html"}).text
    assert "(same rank as the next: p = 0.5" in page and "finds no difference at level 0.05" in page

    managed = api.simulate_get("/v1/benchmarks/sig/compare", headers=admin, params={"a": str(a.id), "b": str(b.id)})
    assert managed.status_code == 200, managed.text
    result = managed.json
    assert (result["test"], result["significant"], result["discordant"]) == (
        "mcnemar_mid_p", False, {"a_only": 1, "b_only": 0})
    assert result["difference"] == pytest.approx(0.001) and result["n_rows"] == 1000 and result["exact"] is True
    assert result["ci"]["low"] <= 0 <= result["ci"]["high"]
    assert result["a"] == {"run_id": str(a.id), "owner": "alice", "value": pytest.approx(0.001 + result["b"]["value"])}

    # A participant compares two of their own runs only, rounded, counts hidden below the plots' k.
    assert api.simulate_get("/v1/benchmarks/sig/compare", headers=alice,
                            params={"a": str(a.id), "b": str(b.id)}).status_code == 404
    again = scored_run("sig", "alice", thousand, second, blobs=blobs, config=config)
    own = api.simulate_get("/v1/benchmarks/sig/compare", headers=alice, params={"a": str(a.id), "b": str(again.id)})
    assert own.status_code == 200, own.text
    assert own.json["exact"] is False and own.json["discordant"] is None and own.json["min_rows"] == 50
    assert own.json["p_value"] == pytest.approx(0.5)
    bad = api.simulate_get("/v1/benchmarks/sig/compare", headers=admin, params={"a": str(a.id), "b": "nope"})
    assert bad.status_code == 404


def test_without_a_level_ranks_are_strict_and_nothing_is_read(api, admin, alice, thousand, blobs, config):
    create_benchmark(api, admin, benchmark_id="plain", dataset="bin:1")
    first = predictions(thousand, 0.85, seed=1)
    second = first.copy()
    second[np.flatnonzero(first == thousand.column("target").to_numpy())[0]] ^= 1
    scored_run("plain", "alice", thousand, first, blobs=blobs, config=config)
    scored_run("plain", "bob", thousand, second, blobs=blobs, config=config)
    entries = api.simulate_get("/v1/benchmarks/plain/leaderboard", headers=alice).json["entries"]
    assert [(e["rank"], e["tied_with_next"], e["p_value_vs_next"]) for e in entries] == [
        (1, False, None), (2, False, None)]


def test_a_minimum_interval_refuses_a_second_submission_with_retry_after(api, admin, alice, bob, thousand):
    create_benchmark(api, admin, benchmark_id="slow", dataset="bin:1", settings={"min_submission_interval_s": 3600})
    assert api.simulate_post("/v1/benchmarks/slow/submissions", json={"name": "m"}, headers=alice).status_code == 201
    refused = api.simulate_post("/v1/benchmarks/slow/submissions", json={"name": "m2"}, headers=alice)
    assert refused.status_code == 429, refused.text
    assert refused.json["error"]["code"] == "too_soon"
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert "retry after" in refused.json["error"]["message"] and refused.json["error"]["resets_at"]
    assert api.simulate_post("/v1/benchmarks/slow/submissions", json={"name": "m"}, headers=bob).status_code == 201
    shown = api.simulate_get("/v1/benchmarks/slow", headers=alice).json["settings"]
    assert shown["min_submission_interval_s"] == 3600 and shown["ladder"] is False


@pytest.mark.parametrize("settings, field", [
    ({"significance_level": 0.7}, "settings.significance_level"),
    ({"ladder": "yes"}, "settings.ladder"),
    ({"min_submission_interval_s": 0}, "settings.min_submission_interval_s"),
])
def test_the_new_settings_are_checked(api, admin, thousand, settings, field):
    response = api.simulate_post("/v1/benchmarks", headers=admin, json={
        "id": "x", "dataset": "bin:1", "task": "classification", "settings": settings})
    assert response.status_code == 422, response.text
    assert response.json["error"]["field"] == field


def test_the_ladder_moves_only_on_a_significant_gain_and_is_the_only_public_feedback(
        api, admin, alice, thousand, blobs, config):
    from evaluator import leaderboard, row_store
    from evaluator.storage.models import Benchmark, LadderStep

    create_benchmark(api, admin, benchmark_id="lad", dataset="bin:1", settings={"ladder": True})
    now = utcnow()
    made = [scored_run("lad", "alice", thousand, predictions(thousand, accuracy, seed=i), blobs=blobs, config=config,
                       finished_at=now - datetime.timedelta(minutes=10 - i))
            for i, accuracy in enumerate((0.70, 0.71, 0.80, 0.79))]
    values = [run.metrics["metrics"]["accuracy"] for run in made]
    assert values[1] > values[0] and values[2] > values[1] + 0.05  # the second gains a little, the third a lot
    entry = api.simulate_get("/v1/benchmarks/lad/leaderboard", headers=alice).json["entries"][0]
    assert entry["run_id"] == str(made[2].id) and entry["score"] == round(values[2], 2)
    assert entry["ladder"]["accepted"] == 2 and entry["ladder"]["submissions"] == 4
    assert entry["ladder"]["decimals"] == 2 and 0.01 < entry["ladder"]["threshold"] < 0.03
    assert "Ladder scores: a participant's public score changes only" in api.simulate_get(
        "/benchmarks/lad", headers={"Accept": "text/html"}).text
    managed = api.simulate_get("/v1/benchmarks/lad/leaderboard", headers=admin).json["entries"][0]
    assert managed["score"] == pytest.approx(round(values[2] * 1000) / 1000)  # exact for managers: [x]_{1/n}

    # A participant's own runs show no public score, no plots and no comparison while it is open.
    assert api.simulate_get(f"/v1/runs/{made[1].id}", headers=alice).json["metrics"] is None
    assert api.simulate_get(f"/v1/runs/{made[1].id}", headers=admin).json["metrics"]["metrics"]["accuracy"]
    assert api.simulate_get(f"/v1/runs/{made[1].id}/plots", headers=alice).json["items"] == []
    refused = api.simulate_get("/v1/benchmarks/lad/compare", headers=alice,
                               params={"a": str(made[0].id), "b": str(made[1].id)})
    assert refused.status_code == 403

    # The steps are stored: a new process builds the same board without reading a prediction.
    # each later run that beat the score at all
    assert LadderStep.select().where(LadderStep.benchmark == "lad").count() == 3
    fresh = row_store.RowStore(blobs, config)
    board = leaderboard.board_for(Benchmark.get_by_id("lad"), None, rows=fresh)
    assert board["entries"][0]["score"] == entry["score"] and not fresh._rows


def test_migration_0010_creates_the_ladder_step_cache_idempotently(migrated_database, db):
    import importlib.util

    from playhouse.migrate import PostgresqlMigrator

    from evaluator.storage.migrations import MIGRATIONS_DIR
    from evaluator.storage.models import LadderStep

    spec = importlib.util.spec_from_file_location("ladder_migration", next(MIGRATIONS_DIR.glob("0010_*.py")))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    migrator = PostgresqlMigrator(migrated_database)
    with migrated_database.connection_context():
        script.up(migrator, migrated_database)  # 0001 built it already: nothing changes
        script.down(migrator, migrated_database)
        assert not migrated_database.table_exists("ladder_step")
        script.up(migrator, migrated_database)
        script.up(migrator, migrated_database)
        assert LadderStep.select().count() == 0
        columns = {c.name for c in migrated_database.get_columns("ladder_step")}
        assert {"run_id", "best_run_id", "metric", "part", "labels", "threshold"} <= columns


def test_a_phase_with_its_own_dataset_is_tested_on_its_own_rows(api, admin, alice, thousand, blobs, config):
    features, labels = binary_dataset(600, seed=5)
    features = features.set_column(0, "row_id", pa.array([f"f{i:05d}" for i in range(600)]))
    labels = labels.set_column(0, "row_id", features.column("row_id"))
    register_dataset_over_http(api, admin, name="bin2", features=features, labels=labels)
    past = (utcnow() - datetime.timedelta(days=1)).isoformat() + "Z"
    create_benchmark(api, admin, benchmark_id="ph", dataset="bin:1", settings={"significance_level": 0.05},
                     phases=[{"slug": "dev", "closes_at": past}, {"slug": "final", "dataset": "bin2:1",
                                                                  "opens_at": past}])
    first = predictions(labels, 0.8, seed=1)
    second = first.copy()
    second[np.flatnonzero(first == labels.column("target").to_numpy())[0]] ^= 1
    a = scored_run("ph", "alice", labels, first, blobs=blobs, config=config, phase="final")
    b = scored_run("ph", "bob", labels, second, blobs=blobs, config=config, phase="final")
    board = api.simulate_get("/v1/benchmarks/ph/leaderboard", headers=alice, params={"phase": "final"}).json
    assert [(e["rank"], e["participant"]) for e in board["entries"]] == [(1, "alice"), (1, "bob")]
    assert board["entries"][0]["test_vs_next"] == "mcnemar_mid_p"
    compared = api.simulate_get("/v1/benchmarks/ph/compare", headers=admin, params={"a": str(a.id), "b": str(b.id)})
    assert compared.status_code == 200, compared.text
    assert compared.json["n_rows"] == 600 and compared.json["discordant"] == {"a_only": 1, "b_only": 0}


def test_a_shared_rank_moves_an_exact_tie_below_the_tested_pairs_on_every_page(
        api, admin, alice, thousand, blobs, config):
    """The 20th and 21st entries do not differ significantly: the 21st shares rank 20, and so do the 22nd and
    23rd, exactly equal to it but below the tested pairs, on the whole board, on a later page and as ranked in
    Python."""
    from evaluator import leaderboard, row_store
    from evaluator.storage.models import Benchmark

    create_benchmark(api, admin, benchmark_id="deep", dataset="bin:1", settings={"significance_level": 0.05})
    truth = thousand.column("target").to_numpy()
    now = utcnow()
    for i in range(23):
        predicted = truth.copy()
        wrong = 20 * min(i, 19) + (1 if i >= 20 else 0)  # 20 rows apart down to the 20th; then one row, three times
        predicted[:wrong] ^= 1
        scored_run("deep", f"p{i:02d}", thousand, predicted, blobs=blobs, config=config,
                   finished_at=now - datetime.timedelta(minutes=30 - i))
    expected = [*range(1, 21), 20, 20, 20]
    whole = api.simulate_get("/v1/benchmarks/deep/leaderboard", headers=alice).json
    assert [e["rank"] for e in whole["entries"]] == expected
    assert whole["entries"][19]["tied_with_next"] is True and whole["entries"][18]["tied_with_next"] is False
    later = api.simulate_get("/v1/benchmarks/deep/leaderboard", headers=alice, params={"offset": 19, "limit": 3}).json
    assert later["entries"] == whole["entries"][19:22] and (later["total"], later["participants"]) == (23, 23)
    in_python = leaderboard.build(Benchmark.get_by_id("deep"), private=False, preselect=False,
                                  rows=row_store.shared(blobs, config))
    assert [e["rank"] for e in in_python["entries"]] == expected
