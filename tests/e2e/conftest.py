"""A live stack through the real entry points: gunicorn API, SeaweedFS with its filer webhook, dramatiq workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import requests

from evaluator.config import Config
from evaluator.storage.seaweed import SeaweedServer, Webhook, free_port, wait_for_port
from tests.conftest import BIN, EVENTS_TOKEN, S3_KEY, S3_SECRET, empty_tables, make_config

ROOT = Path(__file__).resolve().parents[2]


class Stack:
    """Processes of one platform; `url` is the API's base URL."""

    def __init__(self, config: Config, logs: Path) -> None:
        self.config = config
        self.url = config.api_base_url
        self.logs = logs
        self.workers: list[subprocess.Popen] = []
        self.worker_overrides: dict[int, dict] = {}  # pid -> what start_worker changed of its Config
        self.api: subprocess.Popen | None = None

    def env(self, **overrides) -> dict[str, str]:
        config = self.config.replace(**overrides)
        return {**os.environ, **config.to_env(), "dramatiq_queue_prefetch": "1", "PYTHONUNBUFFERED": "1"}

    def _spawn(self, name: str, command: list[str], **overrides) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        return subprocess.Popen(command, cwd=ROOT, env=self.env(**overrides), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_api(self) -> None:
        self.api = self._spawn("api", [str(BIN / "evaluator"), "api"])
        wait_for_port(self.config.api_port, 30, proc=self.api)
        deadline = time.monotonic() + 30
        while self.call("GET", "/health").status_code != 200:
            if time.monotonic() > deadline or self.api.poll() is not None:
                raise RuntimeError(f"the API did not become healthy\n{self.log_tail()}")
            time.sleep(0.3)

    def start_worker(self, processes: int = 1, threads: int = 2, **overrides) -> subprocess.Popen:
        worker = self._spawn(f"worker-{len(self.workers)}", [
            str(BIN / "dramatiq"), "evaluator.worker.broker:setup", "evaluator.worker.actors",
            "--processes", str(processes), "--threads", str(threads)], **overrides)
        self.workers.append(worker)
        self.worker_overrides[worker.pid] = overrides
        return worker

    def restart_api(self, **overrides) -> None:
        """Stop the API and start it again with `overrides` to its Config; tolerate resets while it boots."""
        self.kill(self.api)
        self.config = self.config.replace(**overrides)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.start_api()
                return
            except requests.ConnectionError:  # the port opened before gunicorn's worker took connections
                if time.monotonic() > deadline:
                    raise
                self.kill(self.api)

    def put_back(self, config: Config, workers: list[subprocess.Popen]) -> None:
        """After a test on a module's stack: the API on `config` again, and as many live workers as before.

        A test may kill processes or restart them with other settings; the next test must meet the stack
        as the module started it. Workers the test started with other settings (their own overrides, or
        while the stack's Config differed) are stopped; those it started plainly stand in for the ones
        it killed, and any still missing are started.
        """
        reconfigured = self.config != config
        plain = [w for w in workers if w.poll() is None]
        for worker in self.workers:
            if worker in workers or worker.poll() is not None:
                continue
            if reconfigured or self.worker_overrides.get(worker.pid) or len(plain) >= len(workers):
                self.kill(worker, signal.SIGTERM)
            else:
                plain.append(worker)
        self.workers = plain
        if reconfigured or self.api is None or self.api.poll() is not None:
            self.config = config
            self.restart_api()
        while len(self.workers) < len(workers):
            self.start_worker()

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(30)

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.api]:
            if proc is None:
                continue
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))

    # --- HTTP helpers ---------------------------------------------------------------

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def competition(self, benchmark: dict, *, rows: int = 200, seed: int = 5) -> tuple[str, str, object]:
        """Tokens of an admin and alice, a registered dataset `iris:1` and this benchmark over it.

        Returns (admin token, alice token, labels table).
        """
        from evaluator.tokens import create_token
        from tests.integration.helpers import iris_like, parquet_bytes

        admin, _ = create_token("admin", "admin")
        alice, _ = create_token("alice", "participant")
        declared = self.call("POST", "/v1/datasets", admin, json={"name": "iris", "version": "1"}).json()
        features, labels = iris_like(rows, seed=seed)
        for part, table in (("features", features), ("labels", labels)):
            assert requests.put(declared["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).ok
        self.wait_for(f"/v1/datasets/{declared['id']}", admin, lambda d: d["status"] == "ready", 60)
        response = self.call("POST", "/v1/benchmarks", admin, json={"dataset": "iris:1", **benchmark})
        assert response.status_code == 201, response.text
        return admin, alice, labels

    def wait_for(self, path: str, token: str, done, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        body = None
        while time.monotonic() < deadline:
            body = self.call("GET", path, token).json()
            if done(body):
                return body
            time.sleep(0.3)
        raise AssertionError(f"{path} did not reach the expected state in {timeout_s}s: {body}\n{self.log_tail()}")

    def wait_drained(self, timeout_s: float = 60) -> None:
        """Wait until no message is pending: none unsent in the outbox, none queued or unacknowledged in Redis.

        Dramatiq keeps a message's data in `<namespace>:<queue>.msgs` (`<queue>.DQ.msgs` while delayed) from
        enqueue until its ack, so empty hashes mean every message was handled (what "nothing happened" waits
        for); the dead letters' `<queue>.XQ.msgs` are left out.
        """
        import redis

        from evaluator.storage.models import OutboxMessage

        client = redis.Redis.from_url(self.config.redis_url)
        deadline = time.monotonic() + timeout_s
        while True:
            unsent = OutboxMessage.select().where(OutboxMessage.sent_at.is_null()).count()
            held = sum(client.hlen(key) for key in client.scan_iter(f"{self.config.broker_namespace}:*.msgs")
                       if not key.endswith(b".XQ.msgs"))  # dead letters stay: they are not pending
            if not unsent and not held:
                return
            assert time.monotonic() < deadline, f"{unsent} unsent, {held} unacknowledged\n{self.log_tail()}"
            time.sleep(0.2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `e2e` (`-m "not e2e"` leaves the live stacks out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def webhook_s3(tmp_path_factory):
    """SeaweedFS whose filer posts every change to the API port this process's stacks use, one at a time.

    One per test process, not per module: starting and stopping `weed mini` costs ~3 s, and every stack
    has a bucket of its own on it (an event of another stack's bucket is not one of its uploads).
    """
    api_port = free_port()
    server = SeaweedServer(tmp_path_factory.mktemp("s3-webhook"), S3_KEY, S3_SECRET,
                           webhook=Webhook(f"http://127.0.0.1:{api_port}/v1/events/s3", EVENTS_TOKEN))
    server.start()
    yield server, api_port
    _stop_default(api_port, empty=False)  # NOTE: the session's database may be dropped already
    server.stop()


# The test process's default stack (API + worker on the default settings), by the webhook's API port: kept
# from module to module (a stack costs ~7 CPU-s to start and stop), stopped when another stack needs the port.
_DEFAULT_STACKS: dict[int, tuple[Stack, peewee.Database]] = {}  # and the database it uses


def _stop_default(api_port: int, *, empty: bool = True) -> None:
    """Stop the default stack on this port, and empty the database it leaves (as a module's stack did)."""
    platform, db = _DEFAULT_STACKS.pop(api_port, (None, None))
    if platform is not None:
        platform.stop()
        if empty:
            empty_tables(db)


def stop_default_stacks() -> None:
    """Stop the default stack before a test that does not use it: its reconciler and worker would act on
    that test's rows (the process's tests share one database), and its API holds the webhook's port."""
    for api_port in list(_DEFAULT_STACKS):
        _stop_default(api_port)


def start_stack(webhook_s3, database_url: str, redis_url: str, tmp_path: Path, *, worker: bool = True,
                **overrides) -> Stack:
    """Start an API and (unless `worker` is False) one worker on a fresh bucket; `overrides` change both's Config.

    The stack's Prometheus sample files are in its own folder (tmp_path/metrics).
    """
    from evaluator.storage.blobs import BlobStore
    server, api_port = webhook_s3
    config = make_config(server.endpoint_url, database_url, redis_url, tmp_path / "work",
                         **{"api_port": api_port, "api_workers": 1, "reconcile_interval_s": 5, "log_level": "INFO",
                            "metrics_dir": str(tmp_path / "metrics"), **overrides})
    store = BlobStore.from_config(config)
    store.ensure_buckets(config.bundles_bucket)
    store.set_cors(config.bundles_bucket, config.cors_origins)  # the web pages' browser uploads (test_web_pages.py)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    platform = Stack(config, logs)
    platform.start_api()
    if worker:
        platform.start_worker()
    return platform


def shared_stack_of(webhook_s3, database_url: str, redis_url: str, migrated_database, tmp_path_factory,
                    **overrides) -> Iterator[Stack]:
    """Body of a module-scoped stack fixture: one API + worker (`overrides` to their Config) for a module.

    Starting a stack costs seconds (gunicorn, dramatiq, imports) and stopping it as many; the database is
    emptied once, first. Tests take it through emptied(), which empties it before and puts it back after.
    """
    from evaluator.storage.db import database

    database.initialize(migrated_database)
    empty_tables(migrated_database)
    platform = start_stack(webhook_s3, database_url, redis_url, tmp_path_factory.mktemp("stack"), **overrides)
    yield platform
    platform.stop()
    empty_tables(migrated_database)


@contextlib.contextmanager
def emptied(platform: Stack, migrated_database) -> Iterator[Stack]:
    """Body of a per-test fixture over a module's stack: met as a fresh one starts, put back afterwards.

    Before: its messages handled, the database and the bucket empty. After: Stack.put_back (a test may
    kill a process or restart the API with other settings).
    """
    from evaluator.storage.blobs import BlobStore
    from evaluator.storage.db import database

    database.initialize(migrated_database)  # another test may have bound the proxy elsewhere
    platform.wait_drained()
    empty_tables(migrated_database)
    blobs, bucket = BlobStore.from_config(platform.config), platform.config.bundles_bucket
    for item in list(blobs.list_keys(bucket, "")):
        blobs.delete(bucket, item["key"])
    config, workers = platform.config, list(platform.workers)
    try:
        yield platform
    finally:
        platform.put_back(config, workers)


@pytest.fixture(scope="module")
def shared_stack(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory):
    """The test process's default API + worker, for a whole module whose tests may read what earlier ones left.

    It outlives the module: the next module on the default settings meets it as emptied() leaves it (the
    database emptied once here, first); before a test that does not use it, it is stopped
    (tests/conftest.py's pytest_runtest_setup).
    """
    from evaluator.storage.db import database

    _, api_port = webhook_s3
    database.initialize(migrated_database)
    platform, _ = _DEFAULT_STACKS.get(api_port, (None, None))
    if platform is not None:
        platform.wait_drained()
        platform.put_back(platform.config, list(platform.workers))
    else:
        platform = start_stack(webhook_s3, database_url, redis_url, tmp_path_factory.mktemp("stack"))
        _DEFAULT_STACKS[api_port] = platform, migrated_database
    empty_tables(migrated_database)
    yield platform


@pytest.fixture
def emptied_shared_stack(shared_stack, migrated_database):
    """The module's stack as a fresh one starts: its messages handled, the database and the bucket empty."""
    with emptied(shared_stack, migrated_database) as platform:
        yield platform


@pytest.fixture
def stack(emptied_shared_stack):
    """API + worker against real PostgreSQL, Redis, SeaweedFS (webhook wired) and Docker: the default stack,
    met as a fresh one starts (emptied) and put back after a test that kills or restarts a process."""
    return emptied_shared_stack
