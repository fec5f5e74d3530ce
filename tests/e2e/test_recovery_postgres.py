"""Recovery through the real processes: a PostgreSQL restart mid-run kills no sandbox.

A module of its own: its stack runs on a private PostgreSQL, and takes the API port of this process's
webhook SeaweedFS, which test_recovery.py's module stack holds while that module runs.
"""

from __future__ import annotations

import time

import pytest

from evaluator.storage.models import Run
from tests.e2e.test_recovery import FINAL, containers_of, recovery_stack, start_run, wait_until

pytestmark = pytest.mark.integration


def test_a_postgres_restart_mid_run_kills_no_sandbox(webhook_s3, redis_url, tmp_path, images_built, docker_client):
    from evaluator.storage import migrations
    from evaluator.storage.db import database, init_database
    from tests.e2e.postgres_server import PrivatePostgres

    images_built("sklearn")
    try:
        postgres = PrivatePostgres().create()  # never the shared server on 5432: other tests use it
    except (FileNotFoundError, OSError) as ex:
        pytest.skip(f"no private PostgreSQL: {ex}")
    stack = None
    try:
        migrations.migrate(init_database(postgres.url))
        stack = recovery_stack(webhook_s3, postgres.url, redis_url, tmp_path, lease_s=15)
        # Given a run in its sandbox
        alice, run_id = start_run(stack, 12)
        wait_until(lambda: containers_of(docker_client, run_id), 30, "the run's container never started", stack)
        [container] = containers_of(docker_client, run_id)

        # When PostgreSQL goes away for 2 s (every connection killed) and comes back
        if not database.is_closed():
            database.close()
        postgres.stop("fast")
        time.sleep(2)
        postgres.start()

        # Then the run finishes on its first attempt: the same container ran to its end
        run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, 120)
        assert run["status"] == "succeeded", run
        row = Run.get_by_id(run_id)
        assert (row.attempts, row.crashes) == (1, 0), row.provenance
        assert [a["outcome"] for a in row.provenance["attempts"]] == ["succeeded"]
        assert row.provenance["image_id"] == container.attrs["Image"]
        assert "lease renewal failed" in (stack.logs / "worker-0.log").read_text()
    finally:
        if stack is not None:
            stack.stop()
        if not database.is_closed():
            database.close()
        postgres.destroy()
