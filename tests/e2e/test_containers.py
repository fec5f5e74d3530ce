"""The platform image as docker-compose runs it: migrate, API and worker containers (host network) complete
one evaluation against the test PostgreSQL, Redis and SeaweedFS (docker-compose.yml itself: test_compose.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from evaluator.config import Config
from evaluator.sandbox.runner import run_containers
from tests.conftest import make_config, require
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.conftest import ROOT, Stack
from tests.integration.helpers import iris_like, parquet_bytes

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
# The base the platform image is built from here: made by `evaluator images build --base debootstrap`.
PLATFORM_BASE_IMAGE = os.environ.get("EVALUATOR_TEST_PLATFORM_BASE_IMAGE", "evaluator-rootfs:bookworm")
DOCKER_SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def platform_image(docker_client) -> str:
    """The platform image built by scripts/build-platform-image.sh (seconds when nothing changed)."""
    import docker.errors

    try:
        docker_client.images.get(PLATFORM_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        require(False, f"base image {PLATFORM_BASE_IMAGE} (evaluator images build --base debootstrap)")
    env = {**os.environ, "BASE_IMAGE": PLATFORM_BASE_IMAGE, "PIP": f"{sys.executable} -m pip"}
    result = subprocess.run([str(ROOT / "scripts" / "build-platform-image.sh")], env=env, capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-platform-image.sh failed:\n{result.stderr[-5000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


class ContainerStack(Stack):
    """The Stack's HTTP helpers over an API and workers that run as containers of the platform image."""

    def __init__(self, config: Config, logs: Path, client, image: str) -> None:
        super().__init__(config, logs)
        self.client, self.image = client, image
        self.containers: list = []
        self.prefix = f"evaluator-test-{uuid.uuid4().hex[:8]}"

    def container_env(self) -> dict[str, str]:
        return self.config.to_env()

    def run(self, name: str, command: list[str], **kwargs):
        container = self.client.containers.run(
            self.image, command, name=f"{self.prefix}-{name}", detach=True, network_mode="host",
            environment=self.container_env(), labels={"evaluator.test": self.prefix}, **kwargs)
        self.containers.append(container)
        return container

    def migrate(self) -> None:
        container = self.run("migrate", ["evaluator", "db", "migrate"])
        status = container.wait(timeout=120)
        assert status["StatusCode"] == 0, f"evaluator db migrate failed\n{self.log_tail()}"

    def start_api(self) -> None:
        api = self.run("api", ["evaluator", "api"])
        deadline = time.monotonic() + 60
        while True:
            api.reload()
            if api.status != "running":
                raise RuntimeError(f"the API container stopped\n{self.log_tail()}")
            try:
                if self.call("GET", "/health").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API container did not become healthy\n{self.log_tail()}")
            time.sleep(0.3)

    def start_worker(self, processes: int = 1, threads: int = 1, **overrides):
        # Sandboxes are siblings started by the host's engine, which mounts run folders by host path:
        # the work dir is bind-mounted at the same path inside.
        work_dir = self.config.work_dir
        return self.run(f"worker-{len(self.containers)}",
                        ["evaluator", "worker", "--processes", str(processes), "--threads", str(threads)],
                        volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
                                 work_dir: {"bind": work_dir, "mode": "rw"}})

    def stop(self) -> None:
        for container in reversed(self.containers):
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - gone already; the others must still be removed
                pass

    def log_tail(self) -> str:
        tails = []
        for container in self.containers:
            try:
                tails.append(f"--- {container.name}\n{container.logs(tail=60).decode(errors='replace')}")
            except Exception as ex:  # noqa: BLE001 - a removed container has no logs
                tails.append(f"--- {container.name}: {ex}")
        return "\n".join(tails)


@pytest.fixture
def container_stack(platform_image, webhook_s3, database_url, redis_url, db, docker_client, images_built, tmp_path):
    from evaluator.storage.blobs import BlobStore
    from evaluator.storage.models import Run

    images_built("sklearn")
    require(os.path.exists(DOCKER_SOCKET), f"the Docker socket at {DOCKER_SOCKET}")
    server, api_port = webhook_s3           # SeaweedFS's filer posts its events to this port: the API's
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    config = make_config(server.endpoint_url, database_url, redis_url, work_dir, api_host="127.0.0.1",
                         api_port=api_port, api_workers=1, log_level="INFO")
    BlobStore.from_config(config).ensure_buckets(config.bundles_bucket)
    (tmp_path / "logs").mkdir()
    stack = ContainerStack(config, tmp_path / "logs", docker_client, platform_image)
    try:
        stack.migrate()
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        for run_id in [r.id for r in Run.select(Run.id)]:  # a sandbox left by a worker removed mid-run
            for container in run_containers(docker_client, str(run_id)):
                container.remove(force=True)


def evaluate_iris(stack, limits: dict) -> tuple[str, dict]:
    """One iris dataset, benchmark and scikit-learn submission through the platform's HTTP API and its store,
    as a participant would; return alice's token and her run once it ended."""
    from evaluator.tokens import create_token

    admin, _ = create_token("admin", "admin")
    alice, _ = create_token("alice", "participant")
    declared = stack.call("POST", "/v1/datasets", admin, json={"name": "iris", "version": "1"})
    assert declared.status_code == 201, declared.text
    features, labels = iris_like(200, seed=5)
    for part, table in (("features", features), ("labels", labels)):
        assert requests.put(declared.json()["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).ok
    stack.wait_for(f"/v1/datasets/{declared.json()['id']}", admin, lambda d: d["status"] == "ready", 60)
    response = stack.call("POST", "/v1/benchmarks", admin, json={
        "id": "iris", "dataset": "iris:1", "task": "classification", "limits": limits})
    assert response.status_code == 201, response.text
    bundle = sklearn_bundle()
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "logreg", "method": "put", "size": len(bundle)})
    assert grant.status_code == 201, grant.text
    upload = grant.json()["upload"]
    assert requests.put(upload["url"], data=bundle, headers=upload["headers"], timeout=30).ok
    submission = stack.wait_for(f"/v1/submissions/{grant.json()['submission']['id']}", alice,
                                lambda s: s["runs"], 60)
    return alice, stack.wait_for(f"/v1/runs/{submission['runs'][0]['id']}", alice, lambda r: r["status"] in FINAL, 180)


def test_api_and_worker_containers_complete_an_evaluation(container_stack):
    stack = container_stack
    alice, run = evaluate_iris(stack, {"timeout_s": 60, "memory": "512m"})
    assert run["status"] == "succeeded", f"{run}\n{stack.log_tail()}"
    assert run["metrics"]["metrics"]["accuracy"] > 0.8
    assert run["provenance"]["image_id"].startswith("sha256:")
    board = stack.call("GET", "/v1/benchmarks/iris/leaderboard", alice)
    assert board.status_code == 200, board.text
