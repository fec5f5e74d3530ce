"""Datasets belong to who registered them: an owner uses only her own and cannot tell that others' exist.

An owner who could attach any dataset to her benchmark (or re-score onto it)
would turn a colluder's stored predictions into the labels of a dataset the
admin keeps for a private benchmark.
"""

from __future__ import annotations

import importlib.util
import uuid

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


def token(owner: str, role: str) -> dict:
    from evaluator.tokens import create_token

    secret, _ = create_token(owner, role)
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def olga(db) -> dict:
    return token("olga", "owner")


@pytest.fixture
def tenants(api, admin, olga):
    """The admin's dataset `secret:1` and olga's own `olgas:1` with her benchmark on it."""
    secret = register_dataset_over_http(api, admin, name="secret")
    own = register_dataset_over_http(api, olga, name="olgas")
    create_benchmark(api, olga, benchmark_id="olga-bench", dataset="olgas:1")
    return {"secret": secret, "own": own}


def answer(response, ref: str) -> tuple:
    """What a caller learns from a response, with the ref she sent taken out."""
    body = response.json
    return response.status_code, str(body).replace(ref, "REF")


def test_an_owner_cannot_attach_a_dataset_she_does_not_own_and_cannot_tell_it_exists(api, tenants, olga):
    for ref, missing in (("secret:1", "absent:1"), (tenants["secret"]["id"], str(uuid.uuid4()))):
        body = {"id": "attempt", "task": "classification"}
        refused = api.simulate_post("/v1/benchmarks", headers=olga, json={**body, "dataset": ref})
        unknown = api.simulate_post("/v1/benchmarks", headers=olga, json={**body, "dataset": missing})
        assert refused.status_code >= 400, refused.text
        assert answer(refused, ref) == answer(unknown, missing)
        patched = api.simulate_patch("/v1/benchmarks/olga-bench", headers=olga, json={"dataset": ref})
        patched_missing = api.simulate_patch("/v1/benchmarks/olga-bench", headers=olga, json={"dataset": missing})
        assert patched.status_code >= 400, patched.text
        assert answer(patched, ref) == answer(patched_missing, missing)
    assert Benchmark.get_by_id("olga-bench").dataset_id == uuid.UUID(tenants["own"]["id"])
    assert Benchmark.select().where(Benchmark.id == "attempt").count() == 0


def test_an_owner_lists_and_reads_only_her_own_datasets(api, tenants, olga, admin, alice):
    listed = api.simulate_get("/v1/datasets", headers=olga)
    assert listed.status_code == 200 and [d["ref"] for d in listed.json["items"]] == ["olgas:1"]
    assert listed.json["items"][0]["owner"] == "olga"
    assert api.simulate_get("/v1/datasets/olgas:1", headers=olga).json["id"] == tenants["own"]["id"]
    for ref, missing in (("secret:1", "absent:1"), (tenants["secret"]["id"], str(uuid.uuid4()))):
        hidden = api.simulate_get(f"/v1/datasets/{ref}", headers=olga)
        assert hidden.status_code == 404
        assert answer(hidden, ref) == answer(api.simulate_get(f"/v1/datasets/{missing}", headers=olga), missing)
    assert {d["ref"] for d in api.simulate_get("/v1/datasets", headers=admin).json["items"]} == {"secret:1",
                                                                                                 "olgas:1"}
    assert api.simulate_get("/v1/datasets", headers=alice).status_code == 403  # participants: none at all


def test_an_owner_uses_her_own_datasets_and_an_admin_any(api, tenants, olga, admin):
    register_dataset_over_http(api, olga, name="olgas", version="2")
    moved = api.simulate_patch("/v1/benchmarks/olga-bench", headers=olga, json={"dataset": "olgas:2"})
    assert moved.status_code == 200 and moved.json["dataset"] == "olgas:2"
    assert create_benchmark(api, admin, benchmark_id="admin-on-olgas", dataset="olgas:1")["dataset"] == "olgas:1"
    assert api.simulate_patch("/v1/benchmarks/olga-bench", headers=admin,
                              json={"dataset": "secret:1"}).status_code == 200


def test_datasets_registered_before_owners_existed_are_the_admins_alone(api, tenants, olga, admin):
    Dataset.update(owner=None).where(Dataset.name == "olgas").execute()  # what the migration leaves
    refused = api.simulate_post("/v1/benchmarks", headers=olga,
                                json={"id": "legacy", "task": "classification", "dataset": "olgas:1"})
    unknown = api.simulate_post("/v1/benchmarks", headers=olga,
                                json={"id": "legacy", "task": "classification", "dataset": "absent:1"})
    assert answer(refused, "olgas:1") == answer(unknown, "absent:1")
    assert api.simulate_get("/v1/datasets", headers=olga).json["items"] == []
    assert create_benchmark(api, admin, benchmark_id="legacy", dataset="olgas:1")["dataset"] == "olgas:1"


def test_rescore_needs_the_right_to_use_the_benchmarks_dataset(api, tenants, olga, admin, sent):
    submission = Submission.create(benchmark="olga-bench", owner="colluder", name="m", version="1",
                                   bucket="b", object_key="bundles/olga-bench/colluder/m/1/x.tar.gz")
    run = Run.create(submission=submission, benchmark="olga-bench", owner="colluder", status="succeeded",
                     results_prefix="results/olga-bench/x/")
    assert api.simulate_post("/v1/benchmarks/olga-bench/rescore", headers=olga).status_code == 202
    assert sent.rescores == [str(run.id)]
    # The admin moves olga's benchmark onto the admin's own dataset: olga may not re-score onto it.
    assert api.simulate_patch("/v1/benchmarks/olga-bench", headers=admin,
                              json={"dataset": "secret:1"}).status_code == 200
    refused = api.simulate_post("/v1/benchmarks/olga-bench/rescore", headers=olga)
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "forbidden")
    assert sent.rescores == [str(run.id)]
    assert api.simulate_post("/v1/benchmarks/olga-bench/rescore", headers=admin).status_code == 202


def test_the_migration_adds_the_owner_column_once_and_leaves_old_rows_to_the_admin(migrated_database, db):
    from playhouse.migrate import PostgresqlMigrator

    from evaluator.storage.migrations import MIGRATIONS_DIR

    path = next(MIGRATIONS_DIR.glob("*_dataset_owner.py"))
    spec = importlib.util.spec_from_file_location("dataset_owner_migration", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    migrator = PostgresqlMigrator(migrated_database)
    with migrated_database.connection_context():
        script.up(migrator, migrated_database)  # the column exists already (0001 builds current models)
        script.down(migrator, migrated_database)
        assert "owner" not in {c.name for c in migrated_database.get_columns("dataset")}
        migrated_database.execute_sql(
            "INSERT INTO dataset (id, name, version, status, row_id_column, target_column, file_format, "
            "features_key, labels_key, created_at) VALUES (%s, 'old', '1', 'ready', 'row_id', 'target', "
            "'parquet', 'f', 'l', now())", (str(uuid.uuid4()),))
        script.up(migrator, migrated_database)
        script.up(migrator, migrated_database)
        assert "owner" in {c.name for c in migrated_database.get_columns("dataset")}
        assert Dataset.get(Dataset.name == "old").owner is None
