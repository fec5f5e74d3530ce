"""docker-compose.yml as `docker compose config` (or v1's `docker-compose config`) renders it.

It validates with every secret filled in and refuses while any is missing (as .env.example ships them);
every long-running service restarts and has a health check; published ports bind to 127.0.0.1 unless
BIND_ADDRESS says otherwise; api, worker and migrate run one image built once; the MinIO images come from a
registry variable at pinned tags; SeaweedFS is the `seaweedfs` profile's alternative store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.integration

SECRETS = {"POSTGRES_PASSWORD": "9d2f6a41c07e", "S3_ROOT_PASSWORD": "5be1c0ffee77a1",
           "EVALUATOR_EVENTS_TOKEN": "2b7e151628aed2a6abf7158809cf4f3c", "GRAFANA_ADMIN_PASSWORD": "a8c3e0f1b2"}
PLATFORM = ("migrate", "api", "worker")
ONE_SHOTS = {"migrate", "minio-init", "seaweedfs-init"}
DOCKER_SOCKET = "/var/run/docker.sock"


def compose_command() -> list[str]:
    compose = shutil.which("docker-compose")
    if compose:
        return [compose]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    require(probe.returncode == 0, "docker-compose (or the docker compose plugin)")
    return ["docker", "compose"]


class Project:
    """A copy of the compose file and what it reads (.env, mounted configs) in a folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in ("docker-compose.yml", ".env.example"):
            shutil.copy(ROOT / name, folder / name)
        shutil.copy(ROOT / ".env.example", folder / ".env")
        self.command = compose_command()

    def fill(self, **values: str) -> Project:
        """Set .env lines as an operator edits them."""
        text = (self.folder / ".env").read_text()
        for name, value in values.items():
            text, count = re.subn(rf"(?m)^{name}=.*$", f"{name}={value}", text)
            assert count == 1, f"{name} is not a line of .env.example"
        (self.folder / ".env").write_text(text)
        return self

    def config(self, *args: str, **environ: str) -> subprocess.CompletedProcess:
        # Only this .env speaks: none of the caller's EVALUATOR_*, compose or store variables leak in.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EVALUATOR_", "MINIO_", "POSTGRES_", "S3_", "GRAFANA_", "COMPOSE_", "BIND_"))}
        # Both store profiles, so v2 renders every service too (v1 renders all regardless).
        env["COMPOSE_PROFILES"] = "minio,seaweedfs"
        return subprocess.run([*self.command, "config", *args], cwd=self.folder, env={**env, **environ},
                              capture_output=True, text=True, timeout=120)

    def services(self, **environ: str) -> dict:
        rendered = self.config(**environ)
        assert rendered.returncode == 0, rendered.stderr
        return yaml.safe_load(rendered.stdout)["services"]


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


def ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, published, target) of each port, from v1's strings or v2's mappings."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), str(port["published"]), str(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            found.append(tuple(parts) if len(parts) == 3 else ("", *parts))
    return found


def test_validates_with_the_secrets_filled_in(project):
    project.fill(**SECRETS)
    for profiles in ("minio", "seaweedfs", "minio,seaweedfs"):   # .env's default store, the alternative, both
        checked = project.config("-q", COMPOSE_PROFILES=profiles)
        assert checked.returncode == 0, f"{profiles}: {checked.stderr}"


def test_refuses_to_start_with_the_example_placeholders(project):
    refused = project.config("-q")           # .env.example as shipped: every secret empty
    assert refused.returncode != 0
    assert re.search(r"set (POSTGRES_PASSWORD|S3_ROOT_PASSWORD|EVALUATOR_EVENTS_TOKEN|GRAFANA_ADMIN_PASSWORD) in "
                     r"\.env", refused.stderr), refused.stderr
    for missing in SECRETS:                  # each one on its own is refused, by name
        project.fill(**{**SECRETS, missing: ""})
        refused = project.config("-q")
        assert refused.returncode != 0, f"{missing} empty was accepted"
        assert f"set {missing} in .env" in refused.stderr, refused.stderr


def test_no_working_default_secret(project):
    """No secret has a default: each value in the rendered file comes from .env."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        assert not re.search(rf"\${{{name}:?-", text), f"{name} has a default"
    services = project.fill(**SECRETS).services()
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["S3_ROOT_PASSWORD"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    hook = services["minio"]["environment"]["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_EVALUATOR"]
    assert hook == SECRETS["EVALUATOR_EVENTS_TOKEN"]
    for name in PLATFORM:
        env = services[name]["environment"]
        assert env["EVALUATOR_EVENTS_TOKEN"] == SECRETS["EVALUATOR_EVENTS_TOKEN"]
        assert env["EVALUATOR_S3_SECRET_KEY"] == SECRETS["S3_ROOT_PASSWORD"]
        assert f":{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/" in env["EVALUATOR_DATABASE_URL"]


def test_long_running_services_restart_and_have_health_checks(project):
    services = project.fill(**SECRETS).services()
    assert {"postgres", "redis", "minio", "seaweedfs", "api", "worker", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL") and service["healthcheck"]["test"][1:], name
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "evaluator", "healthcheck", "worker"]
    assert services["api"]["healthcheck"]["test"] == ["CMD", "evaluator", "healthcheck", "api"]
    # What the one-shots gate: the platform after its migration, the store's buckets before the API is used.
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["seaweedfs-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


def test_published_ports_bind_to_loopback_unless_the_operator_says_otherwise(project):
    services = project.fill(**SECRETS).services()
    published = {name: ports(service) for name, service in services.items() if service.get("ports")}
    assert {"api", "minio", "seaweedfs", "grafana", "prometheus"} <= set(published)
    assert all(ip == "127.0.0.1" for bound in published.values() for ip, _, _ in bound), published
    assert ("127.0.0.1", "9001", "9001") in published["minio"]              # the console
    for name in ("postgres", "redis", "worker"):
        assert not services[name].get("ports"), f"{name} publishes a port"
    everywhere = project.fill(BIND_ADDRESS="0.0.0.0").services()
    assert all(ip == "0.0.0.0" for s in everywhere.values() for ip, _, _ in ports(s))


def test_one_platform_image_built_once(project):
    services = project.fill(**SECRETS).services()
    platform = {name: services[name] for name in (*PLATFORM, "seaweedfs-init")}
    assert {s["image"] for s in platform.values()} == {"evaluator-platform:latest"}
    built = [name for name, s in services.items() if "build" in s]
    assert built == ["migrate"], built
    assert services["migrate"]["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert all(s.get("pull_policy") == "never" for name, s in platform.items() if name != "migrate")
    assert services["migrate"]["pull_policy"] == "if_not_present"    # a prebuilt image is used as it is
    assert services["migrate"]["command"] == ["evaluator", "db", "migrate"]
    assert services["api"]["command"] == ["evaluator", "api"]
    assert services["worker"]["command"][:2] == ["evaluator", "worker"]
    assert services["seaweedfs-init"]["command"] == ["evaluator", "store", "init"]
    other = project.fill(EVALUATOR_PLATFORM_IMAGE="registry.internal/evaluator-platform:1.2").services()
    assert {other[name]["image"] for name in PLATFORM} == {"registry.internal/evaluator-platform:1.2"}


def test_minio_images_come_from_a_registry_variable_at_pinned_tags(project):
    services = project.fill(**SECRETS).services()
    assert services["minio"]["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert services["minio-init"]["image"] == "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"
    mirror = project.fill(MINIO_REGISTRY="mirror.internal:5000/minio").services()
    assert mirror["minio"]["image"].startswith("mirror.internal:5000/minio/minio:RELEASE.")
    assert mirror["minio-init"]["image"].startswith("mirror.internal:5000/minio/mc:RELEASE.")
    for name, service in services.items():  # every image at a pinned tag; none from Docker Hub's minio/*
        image = service["image"]
        assert not image.startswith(("minio/", "docker.io/minio/")), image
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and (tag != "latest" or name in (*PLATFORM, "seaweedfs-init")), image


def test_seaweedfs_is_the_alternative_store_profile(project):
    services = project.fill(**SECRETS).services()
    assert services["minio"]["profiles"] == ["minio"] and services["minio-init"]["profiles"] == ["minio"]
    assert services["seaweedfs"]["profiles"] == ["seaweedfs"]
    assert services["seaweedfs-init"]["profiles"] == ["seaweedfs"]
    unprofiled = {name for name, s in services.items() if not s.get("profiles")}
    assert unprofiled == {"postgres", "redis", "migrate", "api", "worker", "prometheus", "grafana"}
    for name in ("minio", "seaweedfs"):                      # either answers as s3:9000
        assert "s3" in services[name]["networks"]["default"]["aliases"]
    assert services["seaweedfs"]["entrypoint"] == ["/bin/sh", "/init/start.sh"]
    assert services["seaweedfs"]["environment"]["S3_PORT"] == "9000"
    for name in PLATFORM:
        assert services[name]["environment"]["EVALUATOR_S3_ENDPOINT_URL"] == "http://s3:9000"
    assert "COMPOSE_PROFILES=minio" in (ROOT / ".env.example").read_text().splitlines()
    script = (ROOT / "storage" / "minio" / "minio-init.sh").read_text()
    assert "--prefix bundles/" in script and "--prefix datasets/" in script and "mc cors set" in script


def test_the_worker_run_folder_is_one_path_on_both_sides(project):
    services = project.fill(**SECRETS).services()

    def mounts(worker: dict) -> set[tuple[str, str]]:
        return {(v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
                for v in worker["volumes"]}

    worker = services["worker"]
    assert worker["environment"]["EVALUATOR_WORK_DIR"] == "/var/lib/evaluator-runs"
    assert {(DOCKER_SOCKET, DOCKER_SOCKET), ("/var/lib/evaluator-runs", "/var/lib/evaluator-runs")} <= mounts(worker)
    desktop = project.fill(EVALUATOR_RUNS_DIR="/Users/ada/evaluator-runs").services()["worker"]  # Docker Desktop
    assert desktop["environment"]["EVALUATOR_WORK_DIR"] == "/Users/ada/evaluator-runs"
    assert ("/Users/ada/evaluator-runs", "/Users/ada/evaluator-runs") in mounts(desktop)


def test_prometheus_accepts_the_stack_s_scrape_config():
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (scripts/machine.sh monitoring)")
    checked = subprocess.run([promtool, "check", "config", str(ROOT / "monitoring" / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
