"""A new user's install: the wheel in a fresh virtualenv outside the checkout, run from another folder.

The wheel is built from a copy of the working tree (so no stale build/ of the checkout leaks
into it) and installed with `--no-index` from the wheelhouse `make platform-image` fills with
the dependencies' wheels (.platform-wheels/); nothing of the checkout is on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from evaluator.sandbox.frameworks import IMAGES
from evaluator.storage.seaweed import free_port, wait_for_port
from tests.conftest import PG_ADMIN_URL, require
from tests.e2e.conftest import ROOT
from tests.e2e.test_dev_and_demo import check_demo_output

pytestmark = pytest.mark.integration

WHEELHOUSE = ROOT / ".platform-wheels"  # the dependencies' wheels (scripts/build-platform-image.sh)
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".platform-wheels", "wheelhouse", ".evaluator",
             ".pytest_cache", ".hypothesis"}


def _source_copy(target: Path) -> Path:
    """Copy the files git knows of (tracked or new, not ignored) from the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not SKIP_DIRS.intersection(Path(name).parts):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    require(WHEELHOUSE.is_dir(), f"the dependencies' wheels in {WHEELHOUSE} (make platform-image)")
    source = _source_copy(tmp_path_factory.mktemp("source"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links",
                             str(WHEELHOUSE), "--wheel-dir", str(dist), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = dist.glob("evaluator-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv (no system site-packages) with the wheel and its dependencies; returns bin/.

    `--no-compile`: byte-compiling every installed module up front is most of pip's CPU here; the tests'
    commands compile what they import, as Python does for any module without a .pyc.
    """
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.monotonic()
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                             "--no-compile", "--no-index", "--find-links", str(WHEELHOUSE), str(wheel)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"pip install of {wheel.name}: {time.monotonic() - started:.1f}s, venv {size / 2**20:.0f} MiB")
    return venv / "bin"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working folder that is not the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert ROOT not in folder.parents
    return folder


@pytest.fixture
def fresh_database() -> str:
    import psycopg2

    from tests.conftest import _port_open

    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"evaluator_wheel_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def user_env(bin_dir: Path, **values: str) -> dict[str, str]:
    """The user's environment: the venv's bin first, nothing that points into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}
           and not k.startswith("EVALUATOR_")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent),
            "PYTHONUNBUFFERED": "1", **values}


def run(bin_dir: Path, cwd: Path, *args: str, timeout: float = 120, **values: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "evaluator"), *args], cwd=cwd, env=user_env(bin_dir, **values),
                          capture_output=True, text=True, timeout=timeout)


def test_the_wheel_ships_migrations_images_and_server_settings(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {p.relative_to(ROOT).as_posix() for folder in ("evaluator/storage/migrations", "evaluator/images")
                for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert any(n.endswith("/0001_initial.py") for n in packaged)
    assert {"evaluator/images/base/Dockerfile", "evaluator/images/base/evaluator_predict.py"} <= packaged
    assert packaged <= names, sorted(packaged - names)
    assert "evaluator/api/gunicorn_settings.py" in names
    assert not [n for n in names if n.split("/")[0] not in {"evaluator"} and ".dist-info/" not in n]


def test_installed_package_runs_from_its_own_files(installed, outside):
    result = subprocess.run([str(installed / "python"), "-c", "import evaluator; print(evaluator.__file__)"],
                            cwd=outside, env=user_env(installed), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.parent), result.stdout


def test_db_migrate_applies_every_packaged_migration(installed, outside, fresh_database):
    result = run(installed, outside, "db", "migrate", EVALUATOR_DATABASE_URL=fresh_database)
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = sorted(p.stem for p in (ROOT / "evaluator" / "storage" / "migrations").glob("[0-9]*.py"))
    assert result.stdout.strip() == f"applied: {', '.join(scripts)}"
    again = run(installed, outside, "db", "status", EVALUATOR_DATABASE_URL=fresh_database)
    assert again.returncode == 0 and again.stdout.split() == [w for s in scripts for w in ("applied", s)]


def test_api_starts_gunicorn_from_the_package(installed, outside, fresh_database):
    assert run(installed, outside, "db", "migrate", EVALUATOR_DATABASE_URL=fresh_database).returncode == 0
    port = free_port()
    values = {"EVALUATOR_DATABASE_URL": fresh_database, "EVALUATOR_API_PORT": str(port),
              "EVALUATOR_API_WORKERS": "1", "EVALUATOR_EVENTS_TOKEN": uuid.uuid4().hex}
    api = subprocess.Popen([str(installed / "evaluator"), "api"], cwd=outside, env=user_env(installed, **values),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(port, 60, proc=api)
        response = requests.get(f"http://127.0.0.1:{port}/v1/benchmarks", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    finally:
        api.terminate()
        output, _ = api.communicate(timeout=60)
    assert "PollerReadWorker" in output or "Booting worker" in output, output[-3000:]


def test_images_list_shows_each_image_and_its_packages(installed, outside, images_built):
    for name in IMAGES:
        images_built(name)
    result = run(installed, outside, "images", "list", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {image["image"]: image for image in json.loads(result.stdout)}
    assert sorted(listed) == sorted(IMAGES)
    pins = dict(line.split("==") for line in (ROOT / "evaluator/images/sklearn/requirements.txt").read_text()
                .splitlines() if "==" in line and not line.startswith("#"))
    # The packaged build contexts hash as the checkout's did when `make images` built them (a framework
    # image built over an older base is reported stale, which is true and not the package's doing).
    assert listed["base"]["status"] == "current", listed["base"]
    assert all(image["status"] in {"current", "stale"} for image in listed.values()), listed
    sklearn = listed["sklearn"]
    assert sklearn["built"] is True and sklearn["name"] == "evaluator-sklearn" and sklearn["python"]
    assert {k.lower(): v for k, v in sklearn["packages"].items()}["scikit-learn"] == pins["scikit-learn"]
    assert "pandas" in {k.lower() for k in listed["base"]["packages"]}
    text = run(installed, outside, "images", "list")
    assert text.returncode == 0 and f"scikit-learn=={pins['scikit-learn']}" in text.stdout, text.stdout


def test_full_demo_from_the_installed_wheel(installed, outside, redis_url, images_built):
    images_built("sklearn")
    images_built("onnx")
    values = {"EVALUATOR_DATA_DIR": str(outside / "data"), "EVALUATOR_API_PORT": str(free_port()),
              "EVALUATOR_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "EVALUATOR_REDIS_URL": redis_url,
              "EVALUATOR_BROKER_NAMESPACE": f"wheel-{uuid.uuid4().hex[:8]}"}
    result = run(installed, outside, "demo", "--json", timeout=900, **values)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_demo_output(result.stdout)
