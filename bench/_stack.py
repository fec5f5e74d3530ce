"""Shared by the benchmarks: a throwaway database, SeaweedFS and Config on this machine's services."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.config import Config  # noqa: E402
from evaluator.storage.seaweed import SeaweedServer, free_port, wait_for_port  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
KEY, SECRET = "bench", "bench-secret"


@contextlib.contextmanager
def services(**overrides) -> Iterator[Config]:
    """Yield a Config on a fresh PostgreSQL database and a fresh SeaweedFS; both removed afterwards."""
    import psycopg2

    from evaluator.storage import migrations
    from evaluator.storage.blobs import BlobStore
    from evaluator.storage.db import init_database

    api_port = overrides.pop("api_port", None) or free_port()
    name = f"evaluator_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="evaluator-bench-"))
    s3 = SeaweedServer(folder / "s3", KEY, SECRET, webhook=overrides.pop("webhook", None),
                       s3_port=overrides.pop("s3_port", 0)).start()
    config = Config(database_url=PG_ADMIN.rsplit("/", 1)[0] + "/" + name, s3_endpoint_url=s3.endpoint_url,
                    s3_access_key=KEY, s3_secret_key=SECRET, broker_namespace=f"bench-{uuid.uuid4().hex[:6]}",
                    redis_url=overrides.pop("redis_url", "redis://127.0.0.1:6379/14"), api_port=api_port,
                    work_dir=str(folder / "work"),
                    log_level="WARNING", **overrides)
    migrations.migrate(init_database(config.database_url))
    BlobStore.from_config(config).ensure_buckets(config.bundles_bucket)
    try:
        yield config
    finally:
        s3.stop()
        from evaluator.storage.db import database

        if not database.is_closed():
            database.close()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def gunicorn(app: str, port: int, env: dict, workers: int = 2) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
                             "--log-level", "warning", app], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(port, 30, proc=proc)
    time.sleep(1.0)  # let every worker boot
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)
