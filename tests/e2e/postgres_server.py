"""A private PostgreSQL for fault tests: restarted at will, apart from the shared server on 5432.

initdb + pg_ctl from /usr/lib/postgresql/*/bin on a free loopback port, in a
folder of its own. PostgreSQL refuses to run as root, so as root the cluster
belongs to the `postgres` system user and every command runs through runuser.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from evaluator.storage.seaweed import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """One throw-away cluster; `url` names its `evaluator` database (trust auth, loopback only).

    `host` and `allow` (a CIDR trusted besides loopback) serve clients in other network
    namespaces: the multi-host test binds it to its bridge's address.
    """

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", allow: str | None = None) -> None:
        self.port = port or free_port()
        self.host, self.allow = host, allow
        self.bin = _bin_dir()
        if self.bin is None:
            raise FileNotFoundError("no /usr/lib/postgresql/*/bin/pg_ctl")
        # Not under pytest's tmp_path: that is root's and 0700, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="evaluator-pg-"))
        self.data = self.folder / "data"
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/evaluator"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin / command[0]), *command[1:]]
        if self._user:
            argv = ["runuser", "-u", self._user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=check)

    def create(self) -> PrivatePostgres:
        if self._user:
            user = pwd.getpwnam(self._user)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        if self.allow:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.allow} trust\n")
        self.start()
        self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", "postgres", "evaluator")
        return self

    def start(self) -> None:
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends every connection (what a restart does to its clients)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
