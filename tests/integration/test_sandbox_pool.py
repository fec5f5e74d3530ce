"""The warm pool: single-use containers started ahead, handed one run each, never holding data before it."""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from evaluator import after_run, orphans
from evaluator.bundles import extract_bundle
from evaluator.errors import RunFailure
from evaluator.evaluation import stage_features
from evaluator.sandbox.pool import POOL_LABEL, WarmPoolSandbox, pooled_images
from evaluator.sandbox.runner import DEPLOYMENT_LABEL, RUN_LABEL, DockerSandbox, run_containers
from evaluator.sandbox.spec import Limits, SandboxSpec
from evaluator.settings import BenchmarkLimits
from evaluator.workers import worker_name
from tests.conftest import require
from tests.integration import sandbox_fixtures as fx
from tests.integration.test_sandbox import HOSTILE, RUNSC, good_bundle, runtime_registered

pytestmark = [pytest.mark.integration, pytest.mark.docker]

IMAGE = "evaluator-sklearn"
TMP_PROBE = '''
import os
def predict(batch):
    seen = os.path.exists("/tmp/probe")
    open("/tmp/probe", "w").write("x")
    print("TMP-SEEN" if seen else "TMP-FRESH", flush=True)
    return [0] * len(batch)
'''


@pytest.fixture
def data(tmp_path):
    return fx.classification_data(tmp_path / "data")


@pytest.fixture
def pool(docker_client, images_built, sandbox_work_dir):
    images_built("sklearn")
    deployment = f"pool-test-{uuid.uuid4().hex[:8]}"
    sandbox = WarmPoolSandbox(docker_client, deployment=deployment, worker=worker_name(),
                              limits=Limits.from_config(HOSTILE), images=pooled_images("sklearn", "evaluator-"),
                              size=1, root=sandbox_work_dir.parent / f"{deployment}-pool").start()
    yield sandbox
    sandbox.close()
    left = docker_client.containers.list(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"})
    assert left == [], "the pool left containers behind at shutdown"


@dataclasses.dataclass
class Outcome:
    status: str  # "succeeded", or the RunFailure's status ("failed", "timed_out", "cancelled")
    failure: dict | None
    log: bytes
    warm: bool = False  # a warm container served it


@pytest.fixture
def run(pool, data, sandbox_work_dir):
    """Run a bundle through a sandbox's run() (the Sandbox protocol evaluate_bundle calls) on staged files."""
    _, _, features, _ = data

    def evaluate(bundle, config=HOSTILE, sandbox=pool, should_cancel=None, run_id=None, settle=True):
        run_id = run_id or f"test-{uuid.uuid4().hex[:8]}"
        folder = sandbox_work_dir / run_id
        manifest = extract_bundle(bundle, folder / "model")
        (folder / "data").mkdir()
        stage_features(features, folder / "data" / "features.parquet")
        for path in (sandbox_work_dir, folder, *folder.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        spec = SandboxSpec(image=IMAGE, model_dir=manifest.root, data_dir=folder / "data",
                           limits=Limits.from_config(config), run_id=run_id,
                           env={"EVALUATOR_ROW_ID_COLUMN": "row_id"})
        try:
            result = sandbox.run(spec, should_cancel=should_cancel)
        except RunFailure as ex:
            return Outcome(ex.status, {"code": ex.code, "message": ex.message}, getattr(ex, "log", b""))
        finally:  # inside a run's scope (after_run) the removal waits for the run to be recorded: settle after it
            assert not settle or sandbox.settle(timeout=60), "the run's container was not removed"
        if result.exit_code != 0 or not result.predictions:
            return Outcome("failed", {"code": "sandbox_error", "message": f"exit {result.exit_code}"}, result.log)
        return Outcome("succeeded", None, result.log, result.warm)

    return evaluate


def wait_ready(pool: WarmPoolSandbox, other_than: str = "") -> str:
    deadline = time.monotonic() + 90
    while True:
        ready = [c for c in pool.ready(IMAGE) if c != other_than]
        if ready:
            return ready[0]
        assert time.monotonic() < deadline, "no warm container came up"
        time.sleep(0.1)


def gone(client, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def bind_folders(client, container_id: str) -> list[Path]:
    mounts = client.api.inspect_container(container_id)["Mounts"]
    return [Path(m["Source"]) for m in mounts if m["Type"] == "bind"]


def test_a_warm_container_serves_exactly_one_run_and_is_removed(pool, run, docker_client, tmp_path, data):
    first = wait_ready(pool)
    folders = bind_folders(docker_client, first)

    evaluation = run(good_bundle(tmp_path, data))

    assert evaluation.status == "succeeded", evaluation.failure
    assert gone(docker_client, first)
    assert not any(folder.exists() for folder in folders)
    assert wait_ready(pool, other_than=first) != first


def test_two_runs_never_share_a_container_a_folder_or_a_tmp(pool, run, docker_client, tmp_path):
    bundle = fx.predict_bundle(tmp_path / "b.tar.gz", TMP_PROBE)
    first = wait_ready(pool)
    first_folders = bind_folders(docker_client, first)
    one = run(bundle)
    second = wait_ready(pool, other_than=first)
    second_folders = bind_folders(docker_client, second)
    two = run(bundle)

    assert one.status == two.status == "succeeded"
    assert b"TMP-FRESH" in one.log and b"TMP-FRESH" in two.log
    assert second != first and set(first_folders).isdisjoint(second_folders)


MARKS_THEN_PREDICTS = '''
import sys, time
def predict(batch):
    time.sleep(1)
    print("MODEL-RUNNING", file=sys.stderr, flush=True)
    time.sleep(2)
    return [0] * len(batch)
'''


def test_the_replacement_starts_only_when_the_runs_sandbox_step_ends(pool, run, docker_client, tmp_path):
    # Given a warm run whose model is running (it said so in the container's log)
    deployment = {"label": f"{DEPLOYMENT_LABEL}={pool._deployment}"}
    container, outcome = wait_ready(pool), []
    thread = threading.Thread(target=lambda: outcome.append(
        run(fx.predict_bundle(tmp_path / "b.tar.gz", MARKS_THEN_PREDICTS))), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while b"MODEL-RUNNING" not in docker_client.containers.get(container).logs():
        assert time.monotonic() < deadline, "the model never ran"
        time.sleep(0.05)

    # Then no other container of the pool competes with it for the CPU meanwhile
    assert [c.id for c in docker_client.containers.list(all=True, filters=deployment)] == [container]
    thread.join(timeout=60)

    # And once its sandbox step is over, a replacement comes up
    assert outcome[0].status == "succeeded", outcome[0].failure
    assert wait_ready(pool, other_than=container) != container


def test_a_run_that_finds_the_replacement_still_starting_waits_for_it_rather_than_going_cold(
        pool, run, tmp_path, data):
    wait_ready(pool)
    bundle = good_bundle(tmp_path, data)

    first = run(bundle)
    second = run(bundle)  # at once: the replacement was only just started

    assert first.status == second.status == "succeeded", (first.failure, second.failure)
    assert first.warm and second.warm


def created_at(client, container_id: str) -> datetime.datetime:
    created = client.api.inspect_container(container_id)["Created"]  # RFC 3339, nanoseconds, UTC
    return datetime.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")


def test_in_a_workers_run_the_replacement_waits_until_the_run_is_recorded(pool, run, docker_client, tmp_path, data):
    # Given a warm run inside a worker's run scope (pipeline.evaluate_run holds one until the run is recorded)
    first = wait_ready(pool)
    with after_run.scope():
        evaluation = run(good_bundle(tmp_path, data), settle=False)
        assert evaluation.status == "succeeded" and evaluation.warm, evaluation.failure
        recorded = datetime.datetime.now(datetime.timezone.utc)
        after_run.release()  # the pipeline's call once runs.finish() returned

        # Then the replacement was created after that, not while the run was scored and written
        replacement = wait_ready(pool, other_than=first)
        assert created_at(docker_client, replacement) > recorded
    assert pool.settle(timeout=60) and gone(docker_client, first)


def test_a_run_waiting_for_a_held_back_replacement_gets_it_started_at_once(pool, run, tmp_path, data):
    # Given a run whose replacement is held back until it is recorded
    wait_ready(pool)
    bundle = good_bundle(tmp_path, data)
    with after_run.scope():
        first = run(bundle, settle=False)
        # When another thread's run arrives before the first is recorded
        second: list[Outcome] = []
        thread = threading.Thread(target=lambda: second.append(run(bundle, settle=False)), daemon=True)
        thread.start()
        thread.join(timeout=120)

        # Then it did not wait for the first run to be recorded, nor go cold: the held start went for it
        assert second, "the second run did not end while the first was still being recorded"
    assert first.status == second[0].status == "succeeded", (first.failure, second[0].failure)
    assert first.warm and second[0].warm
    assert pool.settle(timeout=60)


LINGERS_AFTER_ITS_REPORT = '''
import os, time
os._exit = lambda status: time.sleep(3600)  # the predictor's last call: it would stay up after reporting
def predict(batch):
    return [0] * len(batch)
'''


def test_a_model_that_stays_up_after_its_report_is_killed_before_its_run_is_recorded(
        pool, run, docker_client, tmp_path):
    # Given a warm run, inside a worker's run scope, whose model keeps its container up after reporting
    container = wait_ready(pool)
    with after_run.scope():
        outcome = run(fx.predict_bundle(tmp_path / "b.tar.gz", LINGERS_AFTER_ITS_REPORT), settle=False)
        assert outcome.status == "succeeded", outcome.failure

        # Then its container stops while the run is still being scored and recorded
        deadline = time.monotonic() + 30
        while docker_client.api.inspect_container(container)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container kept running after its run's result was taken"
            time.sleep(0.05)
    assert pool.settle(timeout=60) and gone(docker_client, container)


def test_a_pool_holds_no_tenant_data_before_hand_over(pool, docker_client):
    container = wait_ready(pool)
    folders = bind_folders(docker_client, container)

    assert sorted(Path(f).name for f in folders) == ["data", "model"]
    assert all(list(os.walk(folder)) == [(str(folder), [], [])] for folder in folders)
    attrs = docker_client.api.inspect_container(container)
    assert all(m["RW"] is False for m in attrs["Mounts"] if m["Type"] == "bind")
    assert attrs["HostConfig"]["NetworkMode"] == "none" and attrs["HostConfig"]["ReadonlyRootfs"]
    assert attrs["Config"]["User"] == "65534:65534" and attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert attrs["HostConfig"]["Memory"] == attrs["HostConfig"]["MemorySwap"] > 0
    assert RUN_LABEL not in attrs["Config"]["Labels"] and attrs["Config"]["Labels"][POOL_LABEL] == IMAGE


def test_a_warm_container_that_dies_while_waiting_is_replaced(pool, run, docker_client, tmp_path, data):
    first = wait_ready(pool)
    docker_client.containers.get(first).kill()

    replacement = wait_ready(pool, other_than=first)
    evaluation = run(good_bundle(tmp_path, data))

    assert replacement != first
    assert evaluation.status == "succeeded", evaluation.failure
    assert gone(docker_client, replacement)


def test_a_warm_run_past_its_time_limit_is_killed(docker_client, images_built, run, tmp_path, sandbox_work_dir):
    images_built("sklearn")
    limited = HOSTILE.replace(sandbox_timeout_s=3)
    pool = WarmPoolSandbox(docker_client, deployment=f"pool-test-{uuid.uuid4().hex[:8]}", worker=worker_name(),
                           limits=Limits.from_config(limited), images=pooled_images("sklearn", "evaluator-"),
                           size=1, root=sandbox_work_dir.parent / f"pool-{uuid.uuid4().hex[:8]}").start()
    try:
        container = wait_ready(pool)
        evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.SLEEPS_FOREVER), config=limited, sandbox=pool)
        assert evaluation.status == "timed_out" and evaluation.failure["code"] == "timeout"
        assert gone(docker_client, container)
    finally:
        pool.close()


def test_cancelling_a_warm_run_kills_its_container(pool, run, docker_client, tmp_path):
    container = wait_ready(pool)
    cancelled, outcome = threading.Event(), []
    thread = threading.Thread(target=lambda: outcome.append(
        run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.SLEEPS_FOREVER), should_cancel=cancelled.is_set)))
    thread.start()
    deadline = time.monotonic() + 30
    while container in pool.ready(IMAGE):  # handed over
        assert time.monotonic() < deadline
        time.sleep(0.05)

    cancelled.set()
    thread.join(timeout=30)

    assert outcome[0].status == "cancelled"
    assert gone(docker_client, container)


@pytest.mark.parametrize("source, code", [(fx.ALLOCATES_WITHOUT_BOUND, "out_of_memory")])
def test_hostile_models_are_contained_in_warm_containers(pool, run, docker_client, tmp_path, source, code):
    container = wait_ready(pool)

    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", source))

    # Under load the kernel may kill the predictor before the container's init: then no OOM flag, a failure still
    assert evaluation.status == "failed" and evaluation.failure["code"] in (code, "sandbox_error"), evaluation.failure
    assert gone(docker_client, container)


def test_runs_with_other_limits_take_the_cold_path(pool, run, docker_client, tmp_path, data):
    container = wait_ready(pool)

    evaluation = run(good_bundle(tmp_path, data), config=HOSTILE.replace(sandbox_memory="300m"))

    assert evaluation.status == "succeeded", evaluation.failure
    assert container in pool.ready(IMAGE)  # untouched: the run had a fresh cold container


def test_a_benchmark_on_another_runtime_than_the_pools_runs_cold(pool, run, docker_client, tmp_path, data):
    # Given a runc pool, and a benchmark whose limits.runtime is runsc (Limits.from_config takes it over the config)
    require(runtime_registered(docker_client, RUNSC), "the Docker runtime runsc (scripts/machine.sh gvisor)")
    container = wait_ready(pool)
    own = BenchmarkLimits.from_json({"runtime": RUNSC})
    assert Limits.from_config(HOSTILE, own) == Limits.from_config(HOSTILE.replace(sandbox_runtime=RUNSC))

    evaluation = run(good_bundle(tmp_path, data), config=HOSTILE.replace(sandbox_runtime=RUNSC))

    # Then it ran in a fresh gVisor container, and the warm runc one is still waiting
    assert evaluation.status == "succeeded", evaluation.failure
    assert container in pool.ready(IMAGE)


def test_a_missing_container_runtime_is_a_sandbox_error_naming_the_fix(docker_client, run, tmp_path, data):
    evaluation = run(good_bundle(tmp_path, data), config=HOSTILE.replace(sandbox_runtime="runsc-not-installed"),
                     sandbox=DockerSandbox(docker_client))

    assert evaluation.status == "failed" and evaluation.failure["code"] == "sandbox_error"
    assert "apt-get install runsc" in evaluation.failure["message"]


def hand_over_a_sleeping_run(pool, run, tmp_path, run_id: str | None = None):
    """Start a run that never ends in a warm container, in a thread; return (container, run id, outcome, thread)."""
    container, run_id, outcome = wait_ready(pool), run_id or str(uuid.uuid4()), []
    bundle = fx.predict_bundle(tmp_path / f"sleeps-{run_id[:8]}.tar.gz", fx.SLEEPS_FOREVER)
    thread = threading.Thread(target=lambda: outcome.append(run(bundle, sandbox=pool, run_id=run_id,
                                                                should_cancel=lambda: False)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not run_containers(pool._client, run_id):  # renamed after its run at hand-over
        assert time.monotonic() < deadline, "the warm container was never handed the run"
        time.sleep(0.05)
    return container, run_id, outcome, thread


def test_a_handed_over_warm_container_is_found_as_its_runs(pool, run, docker_client, tmp_path):
    container, run_id, _, thread = hand_over_a_sleeping_run(pool, run, tmp_path)

    [found] = run_containers(docker_client, run_id)
    listed = {c.run_id: c for c in pool.containers()}

    assert found.id == container and found.name == f"evaluator-run-{run_id}"
    assert RUN_LABEL not in found.labels and listed[run_id].id == container
    pool.kill_run(run_id)
    thread.join(timeout=30)


def test_cancel_from_another_process_kills_a_warm_run(pool, run, docker_client, tmp_path, data):
    # Given a warm run in progress, and another worker's (cold) sandbox that knows only the run id
    container, run_id, outcome, thread = hand_over_a_sleeping_run(pool, run, tmp_path)
    elsewhere = DockerSandbox(docker_client, deployment="another-deployment", worker="another-worker")

    # When that sandbox kills the run (the cancel path of a process that does not hold it)
    killed = elsewhere.kill_run(run_id)
    thread.join(timeout=30)

    # Then the warm container is killed and removed, and the run ended without predictions
    assert killed == 1 and outcome and outcome[0].status in ("failed", "cancelled")
    assert gone(docker_client, container)


def test_a_takeover_removes_a_dead_attempts_warm_container_and_its_slot_folder(pool, run, docker_client, tmp_path):
    # Given a warm run whose worker stopped watching it (as if it died), its files linked into a slot folder
    container, run_id, outcome, thread = hand_over_a_sleeping_run(pool, run, tmp_path)
    [slot] = {folder.parent for folder in bind_folders(docker_client, container)}
    deadline = time.monotonic() + 30
    while not any(slot.rglob("predict.py")):  # the files follow the rename
        assert time.monotonic() < deadline, "the run's model was not handed over"
        time.sleep(0.05)

    # When the next attempt, on a cold sandbox of another worker, removes the run's leftovers
    removed = DockerSandbox(docker_client, deployment="another", worker="taker").remove_leftovers(run_id)
    thread.join(timeout=30)

    # Then the warm container and the run's files in its slot folder are gone
    assert removed == 1 and gone(docker_client, container) and not slot.exists()
    assert run_containers(docker_client, run_id) == []


def test_the_orphan_sweep_removes_a_dead_workers_warm_containers_busy_and_idle(
        docker_client, images_built, run, tmp_path, sandbox_work_dir, db):
    # Given a pool of two of a worker of this host that is gone, one container handed a run (no such run in
    # the database: it ended and was deleted) and the other idle
    images_built("sklearn")
    deployment = f"pool-test-{uuid.uuid4().hex[:8]}"
    dead = f"{worker_name().rsplit(':', 2)[0]}:999999999:1"  # no such pid: workers.is_gone() says so
    pool = WarmPoolSandbox(docker_client, deployment=deployment, worker=dead, limits=Limits.from_config(HOSTILE),
                           images=pooled_images("sklearn", "evaluator-"), size=2,
                           root=sandbox_work_dir.parent / f"{deployment}-pool").start()
    try:
        container, run_id, _, thread = hand_over_a_sleeping_run(pool, run, tmp_path)
        idle = wait_ready(pool, other_than=container)
        slots = {f.parent for c in (container, idle) for f in bind_folders(docker_client, c)}

        # When a live worker of the deployment sweeps (a cold sandbox: it needs no pool of its own)
        swept = orphans.sweep(DockerSandbox(docker_client, deployment=deployment, worker=worker_name()),
                              HOSTILE, run_folders=tmp_path / "no-run-folders")

        # Then both containers are removed, with their slot folders
        assert run_id in swept.containers and "" in swept.containers
        assert gone(docker_client, container) and gone(docker_client, idle)
        assert not any(slot.exists() for slot in slots)
        thread.join(timeout=30)
    finally:
        pool.close()


def test_the_pool_fills_when_the_work_dir_does_not_exist_yet(docker_client, images_built, tmp_path):
    # Given a worker whose work dir (EVALUATOR_WORK_DIR) is not made yet, two levels below an existing folder
    images_built("sklearn")
    deployment = f"pool-test-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "host" / "work" / "pool"
    sandbox = WarmPoolSandbox(docker_client, deployment=deployment, worker=worker_name(),
                              limits=Limits.from_config(HOSTILE), images=pooled_images("sklearn", "evaluator-"),
                              size=1, root=root)
    try:
        # When its pool starts, before any run made the work dir
        sandbox.start()
        # Then a warm container comes up anyway, its slot under the pool's root
        container = wait_ready(sandbox)
        assert all(root in folder.parents for folder in bind_folders(docker_client, container))
    finally:
        sandbox.close()
