"""A private redis-server for fault tests: restarted without persistence, apart from the shared one on 6379."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from evaluator.storage.seaweed import free_port, wait_for_port


class PrivateRedis:
    """One redis-server on a free loopback port with `--save ""` and no AOF: a restart loses every key."""

    def __init__(self, folder: Path, port: int | None = None, *, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.host = host  # the multi-host test binds it to its bridge's address
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
             # NOTE: protected mode refuses every non-loopback client; the bridge address is ours alone
             "--protected-mode", "yes" if self.host.startswith("127.") else "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 20, host=self.host, proc=self.proc)
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: nothing is written anywhere) and wait until its port is closed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)
        self.proc = None
        deadline = time.monotonic() + 20
        while _accepts(self.host, self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} still accepts connections after redis-server stopped")
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
