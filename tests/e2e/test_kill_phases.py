"""kill -9 of a worker in each phase of a run, reconciler off: one result, and S3 agrees with the database.

The worker is held at the phase by the testing aid EVALUATOR_FAULT_PAUSE_AT (off by default; read from
Config), or, for `running`, by a model that sleeps in its sandbox. A stalled worker (SIGSTOP past its lease)
resuming after its successor recorded the run writes nothing over the successor's results.
"""

from __future__ import annotations

import os
import signal

import pytest

from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Run
from tests.e2e.conftest import Stack, emptied, shared_stack_of
from tests.e2e.test_recovery import FINAL, LEASE_S, RECOVERY, containers_of, holder, submit_sleepy, wait_until

pytestmark = pytest.mark.integration
RESULT_FILES = {"metrics.json", "predictions.parquet", "sandbox.log"}


@pytest.fixture(scope="module")
def module_stack(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory):
    """The module's recovery API (short lease, reconciler off), without a worker: each test starts its own."""
    yield from shared_stack_of(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory,
                               worker=False, **RECOVERY)


@pytest.fixture
def paused_stack(request, module_stack, migrated_database, images_built):
    """The module's stack, emptied, with a first worker that pauses every attempt at `request.param` (empty: never).

    It is `worker-0` (its log: worker-0.log); Stack.put_back stops it and those the test started, afterwards.
    """
    images_built("sklearn")
    with emptied(module_stack, migrated_database) as platform:
        platform.start_worker(fault_pause_at=request.param)
        yield platform
        for worker in platform.workers:  # a SIGSTOPped group must run again to hear the SIGTERM
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGCONT)
        platform.wait_drained()  # while the test's workers still run: a killed one's message comes back to them


def paused_at(stack: Stack, run_id: str, phase: str) -> None:
    """Wait until the first worker logged that it holds the run at `phase`."""
    line = f"Run {run_id}: paused at {phase} "
    wait_until(lambda: line in (stack.logs / "worker-0.log").read_text(), 120, f"never paused at {phase}", stack)


def results_of(stack: Stack) -> dict[str, dict]:
    """Every result object of the iris benchmark, by key."""
    blobs = BlobStore.from_config(stack.config)
    prefix = layout.results_prefix("iris", "")
    return {item["key"]: item for item in blobs.list_keys(stack.config.results_bucket, prefix)}


def metrics_document(stack: Stack, run_id: str) -> dict:
    blobs = BlobStore.from_config(stack.config)
    return blobs.get_json(stack.config.results_bucket, layout.results_prefix("iris", run_id) + "metrics.json")


def assert_one_result_matching_the_database(stack: Stack, run_id: str, attempt: int) -> None:
    row = Run.get_by_id(run_id)
    assert Run.select().count() == 1 and row.status == "succeeded" and row.attempts == attempt
    # One object set, under the prefix the run records, and nothing else under the benchmark's results
    prefix = layout.results_prefix("iris", run_id)
    assert row.results_prefix == prefix
    # the plots follow the status commit (pipeline.draw_plots): wait for their index

    def with_plots() -> set[str] | None:
        found = set(results_of(stack))
        return found if prefix + "plots/index.json" in found else None

    keys = wait_until(with_plots, 60, "the recorded run's plots were never drawn", stack)
    plots = {key for key in keys if key.startswith(prefix + "plots/")}  # drawn with the recorded attempt's metrics
    assert keys - plots == {prefix + name for name in RESULT_FILES} and prefix + "plots/index.json" in plots
    # metrics.json is the recorded attempt's document: the same metrics, status and provenance
    document = metrics_document(stack, run_id)
    assert document["status"] == row.status and document["failure"] is None
    assert document["metrics"] == row.metrics and document["metrics"]
    assert document["private_metrics"] == row.private_metrics
    recorded = {key: value for key, value in row.provenance.items() if key != "attempts"}
    # published_at is stamped in the row once metrics.json is written, so the document cannot hold it
    recorded["stages"] = dict(recorded.get("stages") or {})
    published = recorded["stages"].pop("published_at", None)
    assert document["provenance"] == recorded and published is not None
    assert document["provenance"]["attempt"] == attempt
    assert document["provenance"]["worker"] == row.provenance["attempts"][-1]["worker"]


@pytest.mark.parametrize("paused_stack, phase", [
    ("preparing", "preparing"), ("", "running"), ("scoring", "scoring"), ("recording", "recording"),
], indirect=["paused_stack"], ids=["preparing", "running", "scoring", "after-metrics-before-record"])
def test_a_worker_killed_in_each_phase_leaves_one_result_that_s3_and_the_database_agree_on(
        paused_stack, phase, docker_client):
    stack = paused_stack
    # Given a run whose worker is in `phase` (its model sleeps in the sandbox for `running`)
    alice, run_id = submit_sleepy(stack, 8 if phase == "running" else 0)
    if phase == "running":
        stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") == "running", 90)
    else:
        paused_at(stack, run_id, phase)
    row = Run.get_by_id(run_id)
    assert row.status == ("scoring" if phase == "recording" else phase)
    if phase == "recording":  # the first attempt's metrics.json is written, the run not recorded
        assert metrics_document(stack, run_id)["provenance"]["attempt"] == 1 and row.results_prefix is None
    first = row.provenance["attempts"][0]

    # When its worker's process group is killed -9 and a fresh worker (no fault injection) starts
    stack.kill(holder(stack, run_id))
    stack.start_worker(fault_pause_at="")

    # Then the run is taken over and succeeds exactly once
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, 180)
    assert run["status"] == "succeeded", run
    row = Run.get_by_id(run_id)
    assert row.crashes == 1
    lost, taker = row.provenance["attempts"]
    assert lost["worker"] == first["worker"] and lost["outcome"] == "worker_lost"
    assert f"{'scoring' if phase == 'recording' else phase}_at" in lost
    assert taker["worker"] != lost["worker"] and taker["outcome"] == "succeeded"
    # ... with one metrics.json, the one the database recorded
    assert_one_result_matching_the_database(stack, run_id, attempt=2)
    # the container is removed after the result, off the run's path (runner.DockerSandbox.settle)
    wait_until(lambda: not containers_of(docker_client, run_id), 60, "the run's container was not removed",
               stack)


@pytest.mark.parametrize("paused_stack", ["publishing"], indirect=True)
def test_a_stalled_worker_resuming_after_its_successor_recorded_the_run_writes_nothing(paused_stack):
    stack = paused_stack
    # Given a worker about to write a run's results, stopped (SIGSTOP) until its lease runs out
    alice, run_id = submit_sleepy(stack, 0)
    paused_at(stack, run_id, "publishing")
    stalled = holder(stack, run_id)
    os.killpg(stalled.pid, signal.SIGSTOP)

    # ... and another worker that took the run over and recorded it
    stack.start_worker(fault_pause_at="")
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, LEASE_S + 120)
    assert run["status"] == "succeeded", run
    assert_one_result_matching_the_database(stack, run_id, attempt=2)

    # When the stalled worker resumes and reaches the write (it either refuses, or writes and fails to record)
    os.killpg(stalled.pid, signal.SIGCONT)
    log = stack.logs / "worker-0.log"
    wait_until(lambda: any(line in log.read_text() for line in (
        f"Run {run_id}: attempt 1 lost its lease before publishing", f"Run {run_id} ended succeeded (set elsewhere")),
        60, "the stalled worker never reached its write", stack)

    # Then S3 still holds the recorded attempt's results, which the database agrees with
    assert_one_result_matching_the_database(stack, run_id, attempt=2)
    assert f"Run {run_id}: attempt 1 lost its lease before publishing" in log.read_text()
