"""Several worker hosts on one machine: shared services on a bridge, workers in network namespaces of their own.

`SharedServices` starts a private PostgreSQL, Redis and SeaweedFS bound to the
bridge's host-side address (the machine's loopback services are out of a
namespace's reach), the store's webhook aimed at an API on loopback. A
`HostStack` is the API plus workers started per fake host: each host has its own
namespace, hostname and run folder, and all of them share the one Docker Engine
(its socket is a unix socket). Used by tests/e2e/test_hosts.py and bench/hosts.py.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path

from evaluator.config import Config
from evaluator.storage.seaweed import SeaweedServer, Webhook, free_port
from tests.conftest import BIN, EVENTS_TOKEN, S3_KEY, S3_SECRET, empty_tables, make_config
from tests.e2e.conftest import Stack
from tests.e2e.netns import HostNetwork
from tests.e2e.postgres_server import PrivatePostgres
from tests.e2e.redis_server import PrivateRedis


class SharedServices:
    """The host side: a bridge to `hosts` namespaces, and PostgreSQL, Redis and S3 listening on its address."""

    def __init__(self, folder: Path, hosts: int = 3) -> None:
        self.folder = folder
        self.network = HostNetwork(hosts)
        self.api_port = free_port()
        self.postgres: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.s3: SeaweedServer | None = None
        self.database = None

    def start(self) -> SharedServices:
        from evaluator.storage import migrations
        from evaluator.storage.db import init_database

        try:
            self.network.create()
            address = self.network.host_ip
            self.postgres = PrivatePostgres(host=address, allow=str(self.network.subnet)).create()
            self.redis = PrivateRedis(self.folder / "redis", host=address).start()
            self.s3 = SeaweedServer(self.folder / "s3", S3_KEY, S3_SECRET, ip=address,
                                    webhook=Webhook(f"http://127.0.0.1:{self.api_port}/v1/events/s3", EVENTS_TOKEN))
            self.s3.start()
            self.database = init_database(self.postgres.url)
            migrations.migrate(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stack(self, folder: Path, **overrides: object) -> HostStack:
        """A fresh platform (emptied tables, its own bucket and broker namespace) on these services."""
        from evaluator.storage.blobs import BlobStore
        from evaluator.storage.db import database

        assert self.postgres and self.redis and self.s3
        database.initialize(self.database)
        empty_tables(self.database)
        config = make_config(self.s3.endpoint_url, self.postgres.url, self.redis.url, folder / "api-work",
                             **{"api_port": self.api_port, "api_workers": 1, "log_level": "INFO", **overrides})
        store = BlobStore.from_config(config)
        store.ensure_buckets(config.bundles_bucket)
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return HostStack(config, logs, self.network)

    def stop(self) -> None:
        """Stop everything that was started, whatever failed before; the namespaces and bridge last."""
        from evaluator.storage.db import database

        steps = [lambda: database.close() if self.database is not None and not database.is_closed() else None,
                 self.s3.stop if self.s3 else None, self.redis.stop if self.redis else None,
                 self.postgres.destroy if self.postgres else None, self.network.destroy]
        for step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception:  # noqa: BLE001 - teardown: the remaining steps must still run
                pass


class HostStack(Stack):
    """An API on loopback and workers per fake host; `hostname(i)` is what host i's workers record."""

    def __init__(self, config: Config, logs: Path, network: HostNetwork) -> None:
        super().__init__(config, logs)
        self.network = network
        self.by_host: dict[int, list[subprocess.Popen]] = collections.defaultdict(list)

    def hostname(self, index: int) -> str:
        return f"evhost-{self.network.tag}-{index}"

    def work_dir(self, index: int) -> Path:
        return self.logs.parent / f"host-{index}" / "work"

    def start_host(self, index: int, processes: int = 1, threads: int = 1, **overrides: object) -> subprocess.Popen:
        """Start `evaluator worker`'s dramatiq command in host `index`'s namespace, under its hostname."""
        argv = [str(BIN / "dramatiq"), "evaluator.worker.broker:setup", "evaluator.worker.actors",
                "--processes", str(processes), "--threads", str(threads)]
        command = self.network.command(index, self.hostname(index), argv)
        proc = self._spawn(f"host-{index}-{len(self.by_host[index])}", command,
                           work_dir=str(self.work_dir(index)), **overrides)
        self.workers.append(proc)
        self.by_host[index].append(proc)
        return proc

    def kill_host(self, index: int) -> None:
        """kill -9 every worker process of host `index` (each started group: master and forked workers)."""
        for proc in self.by_host[index]:
            self.kill(proc)

    def host_of(self, worker: str | None) -> int | None:
        """The host index of a lease owner or worker_host (`hostname:pid:start`), None if none of ours."""
        name = (worker or "").rsplit(":", 2)[0]
        return next((i for i in range(1, self.network.hosts + 1) if self.hostname(i) == name), None)

    def stop(self) -> None:
        super().stop()
        remove_containers(self.config.deployment)


def remove_containers(deployment: str) -> None:
    """Remove this deployment's sandbox containers, warm ones included: a killed host's are nobody's to sweep."""
    import docker

    from evaluator.sandbox.runner import DEPLOYMENT_LABEL

    client = docker.from_env(timeout=60)
    try:
        for container in client.containers.list(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
    finally:
        client.close()
