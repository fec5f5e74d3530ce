"""Service fixtures: real PostgreSQL, Redis, S3 (SeaweedFS) and Docker.

A missing service is skipped locally and fails in CI (CI=true), as dramatiq's
check_redis does: a green CI run must never hide a service that was not there.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real service the test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available, and CI must run every test", pytrace=False)
    pytest.skip(f"{what} is not available")


# --- PostgreSQL, Redis, S3 (foundation) -------------------------------------------------

import socket  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import peewee  # noqa: E402

from evaluator.config import Config  # noqa: E402

PG_ADMIN_URL = os.environ.get("EVALUATOR_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("EVALUATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
S3_KEY, S3_SECRET = "evaluator-test", "evaluator-test-secret"
EVENTS_TOKEN = "test-events-token"
EVENTS_HEADERS = {"Authorization": f"Bearer {EVENTS_TOKEN}"}  # what the store's webhook sends
BIN = Path(sys.executable).parent  # the virtualenv's console scripts: evaluator, dramatiq


def make_config(s3_endpoint_url: str, database_url: str, redis_url: str, work_dir: Path, **overrides: object) -> Config:
    """The one Config of the tests: these services, a fresh bucket and broker namespace; `overrides` win."""
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    return Config(
        database_url=database_url,
        redis_url=redis_url,
        broker_namespace=f"evaluator-test-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3_endpoint_url,
        s3_access_key=S3_KEY,
        s3_secret_key=S3_SECRET,
        datasets_bucket=bucket,
        bundles_bucket=bucket,
        results_bucket=bucket,
        events_token=EVENTS_TOKEN,
        work_dir=str(work_dir),
        sandbox_timeout_s=60,
        sandbox_memory="512m",
    ).replace(**overrides)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    import psycopg2

    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"evaluator_test_{os.getpid()}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    from evaluator.storage.db import database

    if database.obj is not None and not database.is_closed():
        database.close()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> peewee.Database:
    """The session database with every migration applied, through the real migration runner."""
    from evaluator.storage import migrations
    from evaluator.storage.db import init_database

    db = init_database(database_url)
    migrations.migrate(db)
    return db


@pytest.fixture
def db(migrated_database: peewee.Database) -> peewee.Database:
    """The migrated database, emptied before and after each test."""
    from evaluator.storage.db import database

    database.initialize(migrated_database)  # another test may have bound the proxy elsewhere
    empty_tables(migrated_database)
    yield migrated_database
    empty_tables(migrated_database)
    if not migrated_database.is_closed():
        migrated_database.close()


def empty_tables(db: peewee.Database) -> None:
    """Truncate every table of the models that holds a row (the `db` fixture does so around each test).

    TRUNCATE costs 50-100 ms even on empty tables (new files for each), and most tests start on empty
    ones: one query finds the tables with rows, and only those are truncated (CASCADE: and their referrers).
    """
    from evaluator.storage.models import ALL_MODELS

    names = [m._meta.table_name for m in ALL_MODELS]
    probe = " UNION ALL ".join(f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM \"{name}\")" for name in names)
    with db.connection_context():
        filled = [row[0] for row in db.execute_sql(probe).fetchall()]
        if filled:
            tables = ", ".join(f'"{name}"' for name in filled)
            db.execute_sql(f"TRUNCATE {tables} CASCADE")


@pytest.fixture(scope="session")
def redis_url() -> str:
    require(_port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 server (SeaweedFS `weed mini`, loopback only): enforces signatures, expiry, POST policy."""
    from evaluator.storage.seaweed import SeaweedServer

    server = SeaweedServer(tmp_path_factory.mktemp("s3"), S3_KEY, S3_SECRET)
    try:
        server.start()
    except FileNotFoundError as ex:
        require(False, f"SeaweedFS ({ex})")
    yield server
    server.stop()


@pytest.fixture
def config(s3_server, database_url: str, redis_url: str, tmp_path: Path) -> Config:
    """A Config pointing at the test services, with fresh bucket names per test."""
    return make_config(s3_server.endpoint_url, database_url, redis_url, tmp_path / "runs")


@pytest.fixture
def blobs(config: Config):
    """A BlobStore on the test S3 server with this test's bucket created."""
    from evaluator.storage.blobs import BlobStore

    store = BlobStore.from_config(config)
    store.ensure_buckets(config.datasets_bucket, config.bundles_bucket, config.results_bucket)
    store.set_cors(config.bundles_bucket, config.cors_origins)  # as `evaluator dev` does: browser uploads
    return store


# --- API (Falcon TestClient over the real services) -------------------------------------


class RecordingQueues:
    """Queues that only remember what was sent (for tests that start no worker)."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.datasets: list[str] = []
        self.rescores: list[str] = []

    def as_queues(self):
        from evaluator.intake import Queues

        return Queues(evaluate_run=self.runs.append, register_dataset=self.datasets.append,
                      rescore_run=self.rescores.append)


@pytest.fixture
def sent() -> RecordingQueues:
    return RecordingQueues()


@pytest.fixture
def api(config: Config, db: peewee.Database, blobs, sent: RecordingQueues):
    """falcon.testing.TestClient over create_app with real PostgreSQL, Redis and S3."""
    import falcon.testing
    import redis

    from evaluator.api.app import create_app
    from evaluator.storage.db import ping

    checks = {
        "database": lambda: ping(db),
        "broker": lambda: redis.Redis.from_url(config.redis_url, socket_timeout=2).ping(),
        "object_store": lambda: blobs.ping(config.bundles_bucket),
    }
    app = create_app(config, database=db, blobs=blobs, queues=sent.as_queues(), health_checks=checks)
    return falcon.testing.TestClient(app)


def _token(owner: str, role: str) -> dict:
    from evaluator.tokens import create_token

    secret, _ = create_token(owner, role)
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin(db) -> dict:
    """Headers of an admin token."""
    return _token("admin", "admin")


@pytest.fixture
def alice(db) -> dict:
    return _token("alice", "participant")


@pytest.fixture
def bob(db) -> dict:
    return _token("bob", "participant")


# --- Docker fixtures (sandbox) ---
# A real Docker Engine and the framework images built by `evaluator images build`.
# Missing either: skipped locally, a failure in CI (the CI script builds base, sklearn, onnx).


def _docker_client():
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:  # any failure to reach the daemon means "no Docker here"
        return None


@pytest.fixture(scope="session")
def docker_client():
    """A client of the local Docker Engine; the sandbox tests' only service."""
    client = _docker_client()
    require(client is not None, "Docker Engine")
    yield client
    client.close()


@pytest.fixture(scope="session")
def images_built(docker_client):
    """Return require_image(framework): skip locally / fail in CI when its image is not built."""
    import docker.errors

    from evaluator.config import Config
    from evaluator.sandbox.frameworks import image_name

    config = Config()

    def require_image(framework: str) -> str:
        name = image_name(framework, config)
        try:
            docker_client.images.get(name)
        except docker.errors.ImageNotFound:
            require(False, f"image {name} (evaluator images build {framework})")
        return name

    return require_image


@pytest.fixture
def sandbox_work_dir(tmp_path_factory):
    """A fresh run folder for evaluate_bundle, removed afterwards."""
    import shutil
    import uuid
    from pathlib import Path

    root = Path("/tmp/evaluator-test-runs")
    root.mkdir(exist_ok=True)
    root.chmod(0o755)
    path = root / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- Dramatiq: an in-process worker on a StubBroker, for tests of the actors themselves ---


@pytest.fixture(scope="session")
def stub_broker():
    """Set a StubBroker before anything imports the actors (STYLE R9), once per session."""
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker(fail_fast_default=False)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    from evaluator.worker import actors

    for actor in (actors.evaluate_run, actors.mark_run_failed, actors.register_dataset, actors.rescore_run):
        broker.declare_actor(actor)  # in case another broker was set when the module was first imported
    yield broker
    broker.close()


@pytest.fixture
def stub_worker(stub_broker, config, db):
    """An in-process dramatiq.Worker whose actors use this test's Config."""
    import dramatiq

    from evaluator.worker import services

    services.configure(config)
    stub_broker.flush_all()
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()
    services.close_sandbox()  # the warm pool (on by default) of this test's Config


# --- Order: the longest modules first --------------------------------------------------------

# `make test` hands whole modules to its processes in collection order (pytest-xdist --dist loadfile);
# starting the longest ones first keeps one of them from running alone at the end. Measured with
# --durations on this 2-core machine; a module missing here only runs later, never not at all.
LONGEST_MODULES = (
    "test_sandbox_frameworks.py", "test_compose_services.py", "test_kill_phases.py", "test_containers.py",
    "test_push.py", "test_recovery.py", "test_cli_new_user.py", "test_metrics.py", "test_hosts.py",
    "test_wheel_install.py", "test_scoring_large.py", "test_pipeline.py", "test_prediction_files.py",
    "test_ladder_attack.py", "test_intake_recovery.py", "test_recovery_postgres.py", "test_web_pages.py",
    "test_dev_and_demo.py", "test_sandbox_pool.py", "test_sandbox.py", "test_phases.py", "test_compose.py",
    "test_dev_supervision.py", "test_slow_clients.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Stable-sort the longest modules to the front (the order within a module is kept), then the other
    modules on the default e2e stack, side by side: a process keeps that stack from one to the next."""
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    on_default_stack = {item.path for item in items if "shared_stack" in item.fixturenames}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), item.path not in on_default_stack))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that does not use the default e2e stack runs without it (tests.e2e.conftest._DEFAULT_STACKS)."""
    if "shared_stack" not in item.fixturenames and sys.modules.get("tests.e2e.conftest") is not None:
        sys.modules["tests.e2e.conftest"].stop_default_stacks()
