"""Schemathesis over the served /openapi.json against the live API: no 5xx, every answer as documented.

Bounded: at most MAX_EXAMPLES generated cases per operation (about 30 operations).
Most cases carry an admin token so authenticated routes are exercised past
their 401, and most path parameters are swapped for ids that exist (a real
benchmark, dataset, submission and ended run), so the cases reach the
resources' own answers rather than 404s.
"""

from __future__ import annotations

import random

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.bundles import sklearn_bundle
from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(webhook_s3, database_url, redis_url, migrated_database, images_built, tmp_path_factory):
    """A live API + worker with a benchmark, a dataset and alice's ended run; yields (stack, admin, ids)."""
    from evaluator.storage.db import database

    database.initialize(migrated_database)
    images_built("sklearn")
    stack = start_stack(webhook_s3, database_url, redis_url, tmp_path_factory.mktemp("contract"))
    try:
        admin, alice, _ = stack.competition({"id": "iris", "task": "classification",
                                             "settings": {"final_selections": 2, "log_policy": "tail"}})
        bundle = sklearn_bundle()
        grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                           json={"name": "model", "method": "put", "size": len(bundle)}).json()
        assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
        submission = stack.wait_for(f"/v1/submissions/{grant['submission']['id']}", alice, lambda s: s["runs"])
        run = stack.wait_for(f"/v1/runs/{submission['runs'][0]['id']}", alice,
                             lambda r: r["status"] in ("succeeded", "failed", "timed_out"), 180)
        # NOTE: any end will do (the sandbox is not what this tests): its routes answer either way
        ids = {"benchmark_id": "iris", "dataset_id": stack.call("GET", "/v1/datasets/iris:1", admin).json()["id"],
               "submission_id": submission["id"], "run_id": run["id"]}  # NOTE: never token_id: it would revoke ours
        yield stack, admin, ids
    finally:
        stack.stop()


def test_live_api_answers_every_generated_request_as_documented(live):
    # Given the document the live API serves
    stack, admin, ids = live
    schema = schemathesis.openapi.from_url(stack.url + "/openapi.json")
    calls, failures = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    # When each operation gets up to MAX_EXAMPLES generated requests
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def exercise(case):
            chooser = random.Random(repr((case.method, case.path, case.path_parameters, case.query, case.body)))
            for name in list(case.path_parameters or {}):
                if name in ids and chooser.random() < 0.7:
                    case.path_parameters[name] = ids[name]
            if isinstance(case.body, dict) and "dataset" in case.body and chooser.random() < 0.5:
                case.body["dataset"] = "iris:1"  # a dataset that exists, so a create or patch can succeed
            # NOTE: set on the case itself: schemathesis would otherwise send a generated bearer value
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            if chooser.random() < 0.8:
                case.headers["Authorization"] = f"Bearer {admin}"
            calls.append(operation.label)
            case.call_and_validate(base_url=stack.url, checks=CHECKS, timeout=30)

        try:
            exercise()
        except Exception as ex:  # noqa: BLE001 - collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {str(ex)[:1500]}")

    # Then no answer was a 5xx or differed from the document (status, content type, schema)
    assert not failures, f"{len(failures)} operations failed:\n" + "\n\n".join(failures)
    assert 100 <= len(calls) <= 30 * MAX_EXAMPLES * 2, len(calls)  # bounded, and it did run
