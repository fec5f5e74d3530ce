"""Run.board_values, the numbers a board ranks on, stays in step with the metrics documents at every write:
a run's end (runs.finish), a re-score (rescoring.rescore_run, as the worker runs it), Run.create, and the
backfill of migration 0012, on PostgreSQL and on SQLite (issue 13: a cold board of 10,000 runs)."""

from __future__ import annotations

import importlib.util
import random
import uuid

import peewee
import pytest

from evaluator import board_cache, leaderboard, runs
from evaluator.storage import board_values
from evaluator.storage.db import database
from evaluator.storage.migrations import MIGRATIONS_DIR
from evaluator.storage.models import Benchmark, Run, Submission
from tests.integration.helpers import create_benchmark, register_dataset_over_http
from tests.integration.test_leaderboard_scale import document, finished, seed

pytestmark = pytest.mark.integration


def in_step() -> None:
    """Every run's compact values are those of its documents (None: a run without documents)."""
    rows = list(Run.select(Run.id, Run.metrics, Run.private_metrics, Run.board_values))
    assert rows
    for run in rows:
        assert run.board_values == board_values.of(run.metrics, run.private_metrics), run.id


def script():
    path = next(MIGRATIONS_DIR.glob("0012_*.py"))
    spec = importlib.util.spec_from_file_location("board_values_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_values_are_the_documents_finite_numbers_and_the_private_part_falls_back_on_the_public():
    public = {"metrics": {"accuracy": 0.75, "count": 3, "ok": True, "note": "n/a", "none": None, "nested": {}},
              "per_class": {"a": {"f1": 0.5}}}
    assert board_values.of(public, None) == {"public": {"accuracy": 0.75, "count": 3.0, "ok": 1.0},
                                             "private": {"accuracy": 0.75, "count": 3.0, "ok": 1.0}}
    assert board_values.of(public, {}) == board_values.of(public, None)  # an empty private part: unsplit
    assert board_values.of(public, {"rows": 3}) == {"public": {"accuracy": 0.75, "count": 3.0, "ok": 1.0},
                                                    "private": {}}  # a private part without metrics ranks none
    assert board_values.of(None, None) is None


def test_run_create_and_save_write_the_values_and_a_partial_row_keeps_them(api, admin):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    run = finished("alice", 0.9)  # Run.create with the public document only
    assert Run.get_by_id(run.id).board_values == {"public": {"accuracy": 0.9}, "private": {"accuracy": 0.9}}
    partial = Run.select(Run.id, Run.final).where(Run.id == run.id).get()
    partial.final = True
    partial.save()  # neither document read: the values stay
    in_step()
    full = Run.get_by_id(run.id)
    full.private_metrics = {"metrics": {"accuracy": 0.4}}
    full.save()
    in_step()
    assert Run.get_by_id(run.id).board_values["private"] == {"accuracy": 0.4}


def test_a_finished_run_records_the_values_of_its_documents(api, admin):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    rng = random.Random(3)
    for i, private in enumerate([None, {}, document(rng)]):
        submission = Submission.create(benchmark="iris", owner=f"p{i}", name="m", version="1", bucket="b",
                                       object_key=f"bundles/{uuid.uuid4()}.tar.gz", status="uploaded")
        run = Run.create(submission=submission, benchmark="iris", owner=f"p{i}", status="scoring")
        assert Run.get_by_id(run.id).board_values is None
        assert runs.finish(str(run.id), status="succeeded", metrics=document(rng), private_metrics=private)
    submission = Submission.create(benchmark="iris", owner="p3", name="m", version="1", bucket="b",
                                   object_key=f"bundles/{uuid.uuid4()}.tar.gz", status="uploaded")
    failed = Run.create(submission=submission, benchmark="iris", owner="p3", status="running")
    assert runs.finish(str(failed.id), status="failed", failure={"code": "X", "message": "no"})
    in_step()
    assert Run.get_by_id(failed.id).board_values is None


def test_a_rescored_run_records_the_values_of_its_new_documents(api, admin, blobs, config):
    import pyarrow as pa

    from evaluator.rescoring import rescore_run
    from tests.integration.helpers import iris_like, parquet_bytes

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    _, labels = iris_like()
    run = finished("alice", 0.99)
    prefix = f"results/iris/{run.id}/"
    Run.update(results_prefix=prefix).where(Run.id == run.id).execute()
    truth = labels.column("target").to_pylist()
    predictions = pa.table({"row_id": labels.column("row_id"), "prediction": [(t + 1) % 3 for t in truth]})
    blobs.put_bytes(config.results_bucket, prefix + "predictions.parquet", parquet_bytes(predictions))

    rescore_run(str(run.id), blobs=blobs, config=config)
    rescored = Run.get_by_id(run.id)
    assert rescored.board_values["public"]["accuracy"] == rescored.metrics["metrics"]["accuracy"] == 0.0
    in_step()


def test_migration_0012_backfills_the_values_and_the_board_reads_them(api, admin, migrated_database):
    from playhouse.migrate import PostgresqlMigrator

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    seed("iris", random.Random(12))
    in_step()  # Run.create wrote them
    benchmark = Benchmark.get_by_id("iris")
    reference = leaderboard.build(benchmark, private=True, preselect=False)
    migration, migrator = script(), PostgresqlMigrator(migrated_database)
    migration.down(migrator, migrated_database)
    assert "board_values" not in {c.name for c in migrated_database.get_columns("run")}
    migration.up(migrator, migrated_database)
    migration.up(migrator, migrated_database)  # idempotent
    in_step()
    assert migration.INDEX in {index.name for index in migrated_database.get_indexes("run")}
    # a row without values (written before the column) is read from its documents: the same board
    Run.update(board_values=None).where(Run.owner.in_(["p01", "p02", "p03"])).execute()
    board_cache.clear()
    assert leaderboard.build(benchmark, private=True) == reference
    migration.backfill(migrated_database)
    in_step()
    board_cache.clear()
    assert leaderboard.build(benchmark, private=True) == reference


def test_migration_0012_on_sqlite(tmp_path):
    from playhouse.migrate import SqliteMigrator

    from evaluator.storage import migrations
    from evaluator.storage.models import Dataset

    sqlite = peewee.SqliteDatabase(str(tmp_path / "evaluator.db"))
    previous = database.obj
    database.initialize(sqlite)
    try:
        migrations.migrate(sqlite)
        dataset = Dataset.create(name="d", version="1", features_key="f", labels_key="l", status="ready")
        Benchmark.create(id="b", title="b", dataset=dataset, task="classification", primary_metric="accuracy",
                         direction="maximize", owner="admin")
        rng = random.Random(5)
        for i, private in enumerate([None, {}, document(rng)]):
            submission = Submission.create(benchmark="b", owner=f"p{i}", name="m", version="1", bucket="b",
                                           object_key=f"k{i}", status="uploaded")
            Run.create(submission=submission, benchmark="b", owner=f"p{i}", status="succeeded",
                       metrics=document(rng), private_metrics=private)
        Run.update(board_values=None).execute()
        migration, migrator = script(), SqliteMigrator(sqlite)
        migration.up(migrator, sqlite)  # the backfill
        in_step()
        migration.down(migrator, sqlite)
        assert "board_values" not in {c.name for c in sqlite.get_columns("run")}
        migration.up(migrator, sqlite)
        in_step()
    finally:
        database.initialize(previous)
        sqlite.close()
