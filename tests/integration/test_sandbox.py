"""Hostile models in real containers: each is contained, reported with its code, and the next run works."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import docker.errors
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from evaluator.config import Config
from evaluator.evaluation import evaluate_bundle, stage_features
from evaluator.sandbox.runner import RUN_LABEL, DockerSandbox
from evaluator.sandbox.spec import RUNTIME_PIDS_OVERHEAD
from evaluator.settings import Scoring
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]

# Small limits keep hostile runs quick on a 2-core machine.
HOSTILE = Config(sandbox_timeout_s=20, sandbox_memory="256m", sandbox_cpus=1.0, sandbox_pids=64,
                 sandbox_output_bytes=16 * 1024 * 1024, sandbox_tmp_bytes=16 * 1024 * 1024, sandbox_log_bytes=16 * 1024)


@pytest.fixture
def data(tmp_path):
    return fx.classification_data(tmp_path / "data")


RUNSC = "runsc"


def runtime_registered(client, name: str) -> bool:
    return name in (client.info().get("Runtimes") or {})


@pytest.fixture(params=["runc", RUNSC])
def runtime(request, docker_client) -> str:
    """Every hostile test runs under Docker's default runtime and under gVisor (a test fails in CI without it)."""
    if request.param == RUNSC:
        from tests.conftest import require

        require(runtime_registered(docker_client, RUNSC), "the Docker runtime runsc (scripts/machine.sh gvisor)")
    return request.param


@pytest.fixture
def run(request, runtime, docker_client, images_built, data, sandbox_work_dir):
    """Evaluate a bundle with the hostile limits, under `runtime`; check no container of the run is left.

    Parametrized indirectly with "warm", the run is handed to a warm pool container
    (asserted: that container is gone afterwards) instead of a cold one.
    """
    images_built("sklearn")
    warm = getattr(request, "param", "cold") == "warm"
    hostile = on_runtime(HOSTILE, runtime)
    sandbox = DockerSandbox(docker_client)
    if warm:
        from evaluator.sandbox.pool import WarmPoolSandbox, pooled_images
        from evaluator.sandbox.spec import Limits
        sandbox = WarmPoolSandbox(docker_client, deployment=f"pool-test-{uuid.uuid4().hex[:8]}", worker="test",
                                  limits=Limits.from_config(hostile), images=pooled_images("sklearn", "evaluator-"),
                                  size=1, root=sandbox_work_dir.parent / f"pool-{uuid.uuid4().hex[:8]}").start()
        request.addfinalizer(sandbox.close)
    _, _, features, labels = data

    def evaluate(bundle, config=HOSTILE, dataset=None, **kwargs):
        config = on_runtime(config, runtime)
        run_id = f"test-{uuid.uuid4().hex[:8]}"
        features_path, labels_path = dataset or (features, labels)
        handed = _wait_warm(sandbox) if warm else None
        evaluation = evaluate_bundle(bundle, features_path, labels_path, scoring=Scoring("classification"),
                                     sandbox=sandbox, config=config, work_dir=sandbox_work_dir / run_id,
                                     run_id=run_id, **kwargs)
        assert sandbox.settle(timeout=60), "the run's container was not removed"  # removal follows the result
        assert docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}) == []
        if handed is not None:
            with pytest.raises(docker.errors.NotFound):  # the warm container took the run, and is gone
                docker_client.containers.get(handed)
        return evaluation

    return evaluate


def on_runtime(config: Config, runtime: str) -> Config:
    return config.replace(sandbox_runtime="" if runtime == "runc" else runtime)


def _wait_warm(pool) -> str:
    deadline = time.monotonic() + 90
    while not pool.ready("evaluator-sklearn"):
        assert time.monotonic() < deadline, "no warm container came up"
        time.sleep(0.1)
    return pool.ready("evaluator-sklearn")[0]


BOTH = pytest.mark.parametrize("run", ["cold", "warm"], indirect=True)


def good_bundle(tmp_path, data):
    x, y, _, _ = data
    return fx.sklearn_bundle(tmp_path / "good.tar.gz", LogisticRegression(max_iter=300).fit(x, y))


def test_a_model_that_sleeps_forever_is_timed_out(run, tmp_path):
    started = time.monotonic()

    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.SLEEPS_FOREVER),
                     config=HOSTILE.replace(sandbox_timeout_s=3))

    assert evaluation.status == "timed_out" and evaluation.failure["code"] == "timeout"
    assert "3s limit" in evaluation.failure["message"]
    assert time.monotonic() - started < 15


def test_a_model_that_allocates_without_bound_is_out_of_memory(run, tmp_path):
    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.ALLOCATES_WITHOUT_BOUND))

    assert evaluation.status == "failed" and evaluation.failure["code"] == "out_of_memory"
    assert "256m" in evaluation.failure["message"]


def test_a_fork_bomb_hits_the_pids_limit(run, runtime, tmp_path):
    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.FORK_BOMB))

    log = evaluation.log.decode()
    if runtime == RUNSC and "FORK-REFUSED" not in log:
        # Under gVisor each child costs the Sentry memory, so the memory limit may end it first, or the
        # Sentry may be the task refused (google/gvisor#2490): either way the whole sandbox ends, contained.
        assert evaluation.status == "failed" and evaluation.failure["code"] in ("sandbox_error", "out_of_memory")
        return
    assert evaluation.status == "failed" and evaluation.failure["code"] == "sandbox_error"
    children = int(log.split("FORK-REFUSED after ")[1].split()[0])
    assert children < HOSTILE.sandbox_pids + (RUNTIME_PIDS_OVERHEAD.get(runtime, 0))


@BOTH
def test_a_model_that_fills_output_and_tmp_is_stopped_by_the_tmpfs_caps(run, tmp_path):
    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.FILLS_OUTPUT))

    log = evaluation.log.decode()
    written = int(log.split("OUTPUT-FULL after ")[1].split()[0])
    assert written <= HOSTILE.sandbox_output_bytes
    assert "No space left on device" in log and "TMP-FULL" in log
    # /output is full, so its predictions cannot be written either: a failure, never a host disk filled.
    assert evaluation.failure["code"] == "sandbox_error"


@BOTH
def test_a_model_that_floods_stdout_keeps_only_head_and_tail_of_its_log(run, tmp_path):
    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.FLOODS_STDOUT))

    assert evaluation.status == "succeeded", evaluation.failure
    log = evaluation.log
    assert len(log) < HOSTILE.sandbox_log_bytes + 200
    assert b"FLOOD-START" in log and b"FLOOD-END" in log and b"bytes of log omitted" in log


@BOTH
def test_a_pickle_that_runs_a_command_runs_it_only_inside_the_sandbox(run, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    bundle = fx.malicious_pickle_bundle(tmp_path / "evil.tar.gz", marker)

    evaluation = run(bundle)

    assert not marker.exists()  # extraction and validation never unpickle on the host
    assert b"PICKLE-RAN uid=65534" in evaluation.log  # it did run: in the container, unprivileged
    assert evaluation.failure["code"] == "sandbox_error"


@BOTH
def test_inside_the_sandbox_no_root_no_network_no_labels_and_a_read_only_model(run, runtime, tmp_path):
    # Given a real service on the host's loopback
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        # When a probe model looks around
        # (the probe carries the secret reversed, so its own source is not a hit)
        _, _, features, labels = fx.classification_data(tmp_path / "secret", secret_labels=True)
        probe = fx.PROBE % {"secret": fx.SECRET[::-1], "port": port}
        evaluation = run(fx.predict_bundle(tmp_path / "probe.tar.gz", probe), dataset=(features, labels))
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever reached the host service
            server.accept()
    finally:
        server.close()

    # Then it found itself unprivileged, offline, and without labels
    line = next(raw for raw in evaluation.log.decode().splitlines() if raw.startswith("PROBE "))
    findings = json.loads(line[len("PROBE "):])
    assert findings["euid"] != 0
    assert findings["interfaces"] == ["lo"] and findings["routes"] == []
    assert findings["loopback_service"].startswith("ConnectionRefusedError")
    # runc: no route at all (ENETUNREACH); gVisor with --network=none answers EHOSTUNREACH
    assert findings["internet"].startswith("OSError") and ("unreachable" in findings["internet"]
                                                           or "No route to host" in findings["internet"])
    # gVisor checks the folder's permissions (root's, 0755) before the read-only mount: either refuses a write
    refused = ("Read-only file system", "Permission denied") if runtime == RUNSC else ("Read-only file system",)
    assert any(reason in findings["write_model"] for reason in refused), findings["write_model"]
    assert any(reason in findings["write_root"] for reason in refused), findings["write_root"]
    assert findings["label_files"] == []
    assert {"/model", "/data", "/tmp", "/output"} <= set(findings["mounts"])
    # The scan would have found the labels had they been mounted: the token is in the file as bytes.
    assert fx.SECRET.encode() in labels.read_bytes()


@BOTH
def test_a_cancelled_run_is_killed(run, tmp_path):
    started = time.monotonic()

    evaluation = run(fx.predict_bundle(tmp_path / "b.tar.gz", fx.SLEEPS_FOREVER),
                     should_cancel=lambda: time.monotonic() - started > 2)

    assert evaluation.status == "cancelled" and evaluation.failure["code"] == "cancelled"
    assert time.monotonic() - started < 10


def test_a_missing_image_names_the_build_command(run, tmp_path, data):
    evaluation = run(good_bundle(tmp_path, data), config=HOSTILE.replace(image_prefix="evaluator-missing-"))

    assert evaluation.failure["code"] == "sandbox_error"
    assert "evaluator images build sklearn" in evaluation.failure["message"]


def test_the_sandbox_still_works_after_the_hostile_models(run, tmp_path, data):
    stages = []

    evaluation = run(good_bundle(tmp_path, data), on_stage=stages.append)

    assert evaluation.status == "succeeded", (evaluation.failure, evaluation.log[-2000:])
    assert stages == ["preparing", "running", "scoring"]
    assert evaluation.metrics["metrics"]["accuracy"] > 0.8


def test_kill_run_from_elsewhere_ends_the_run_as_cancelled(docker_client, images_built, data, tmp_path,
                                                           sandbox_work_dir):
    # Given a run in another thread, and a cancel flag set by whoever kills its containers
    images_built("sklearn")
    sandbox, cancelled, outcome = DockerSandbox(docker_client), threading.Event(), []
    _, _, features, labels = data
    bundle = fx.predict_bundle(tmp_path / "b.tar.gz", fx.SLEEPS_FOREVER)
    running = {"label": f"{RUN_LABEL}=test-kill-run", "status": "running"}

    def killed_elsewhere() -> bool:
        # the flag reads true only once its container is gone: the run's own cancel poll cannot kill it first
        return cancelled.is_set() and not docker_client.containers.list(filters=running)

    thread = threading.Thread(target=lambda: outcome.append(evaluate_bundle(
        bundle, features, labels, scoring=Scoring("classification"), sandbox=sandbox, config=HOSTILE,
        work_dir=sandbox_work_dir, run_id="test-kill-run", should_cancel=killed_elsewhere)))
    thread.start()
    deadline = time.monotonic() + 20
    while not docker_client.containers.list(filters=running):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # When another process kills the run's containers
    cancelled.set()
    assert sandbox.kill_run("test-kill-run") == 1
    thread.join(timeout=20)

    # Then the run ends cancelled and leaves nothing behind
    assert outcome[0].status == "cancelled"
    assert sandbox.settle(timeout=60)
    assert docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}=test-kill-run"}) == []


def test_staged_features_never_carry_the_target_column(tmp_path):
    _, _, features, labels = fx.classification_data(tmp_path)
    merged = pq.read_table(features).append_column("target", pq.read_table(labels).column("target"))
    pq.write_table(merged, tmp_path / "with-target.parquet")

    rows = stage_features(tmp_path / "with-target.parquet", tmp_path / "staged.parquet", drop_columns=("target",))

    assert rows == 120
    assert pq.read_schema(tmp_path / "staged.parquet").names == ["row_id", "f0", "f1", "f2", "f3"]


def test_an_unreachable_docker_daemon_is_an_infrastructure_error_the_worker_retries(tmp_path, data):
    import docker

    from evaluator.errors import InfrastructureError

    _, _, features, labels = data
    bundle = good_bundle(tmp_path, data)
    sandbox = DockerSandbox(docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41"))

    with pytest.raises(InfrastructureError, match="Docker daemon unavailable"):
        evaluate_bundle(bundle, features, labels, scoring=Scoring("classification"), sandbox=sandbox, config=HOSTILE,
                        work_dir=tmp_path / "work", run_id="test-no-daemon")


def test_a_leftover_container_of_a_dead_attempt_is_removed_by_the_next_attempt(
        docker_client, images_built, tmp_path, data, sandbox_work_dir):
    # Given a container of run X left behind by a worker that died (never removed)
    image = images_built("sklearn")
    leftover = docker_client.containers.create(image, labels={RUN_LABEL: "test-redelivered"}, network_mode="none")

    # When the redelivered attempt of run X runs
    sandbox = DockerSandbox(docker_client)
    _, _, features, labels = data
    evaluation = evaluate_bundle(good_bundle(tmp_path, data), features, labels, scoring=Scoring("classification"),
                                 sandbox=sandbox, config=HOSTILE, work_dir=sandbox_work_dir,
                                 run_id="test-redelivered")

    # Then the leftover is gone and the run succeeded
    assert evaluation.status == "succeeded"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(leftover.id)
