"""`evaluator dev` supervises its SeaweedFS child: a killed `weed` is restarted (the store answers again and a
presigned grant works), and past EVALUATOR_DEV_S3_MAX_RESTARTS crashes dev stops loudly with a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from evaluator.storage.seaweed import wait_for_port
from tests.e2e.conftest import BIN, ROOT
from tests.e2e.test_dev_and_demo import dev_env

pytestmark = pytest.mark.integration


def weed_children(parent: int) -> list[int]:
    """Pids of the `weed` processes whose parent is `parent` (dev starts weed in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == parent and fields[0] not in "ZX" and argv and argv[0].endswith(b"weed"):
            found.append(int(entry.name))
    return found


def poll(what: str, predicate, timeout_s: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"evaluator dev exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def s3_answers(endpoint: str) -> bool:
    import boto3
    import botocore.exceptions
    from botocore.config import Config as BotoConfig

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="evaluator",
                          aws_secret_access_key="evaluator-secret",
                          config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
    try:
        return "evaluator" in {b["Name"] for b in client.list_buckets()["Buckets"]}
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False


@pytest.fixture
def dev(tmp_path, images_built, request):
    images_built("sklearn")
    images_built("onnx")
    env = dev_env(tmp_path, "redis://127.0.0.1:1/0")  # the in-process broker: no Redis needed
    env.update(getattr(request, "param", {}))
    log = open(tmp_path / "dev.log", "w+")
    proc = subprocess.Popen([str(BIN / "evaluator"), "dev"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(int(env["EVALUATOR_API_PORT"]), 120, proc=proc)
        yield proc, env, tmp_path / "dev.log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        for pid in weed_children(proc.pid):  # never leave a store behind
            os.kill(pid, signal.SIGKILL)
        log.close()


def test_a_killed_store_is_restarted_and_grants_work_again(dev):
    proc, env, log = dev
    api = f"http://127.0.0.1:{env['EVALUATOR_API_PORT']}"
    s3 = env["EVALUATOR_S3_ENDPOINT_URL"]
    assert requests.get(f"{api}/health", timeout=10).status_code == 200
    [weed] = poll("the weed child", lambda: weed_children(proc.pid), 30, proc)

    os.kill(weed, signal.SIGKILL)
    poll("a new weed child", lambda: [p for p in weed_children(proc.pid) if p != weed], 60, proc)
    poll("the store to answer again", lambda: s3_answers(s3), 90, proc)

    token = (Path(env["EVALUATOR_DATA_DIR"]) / "admin.token").read_text().strip()
    declared = requests.post(f"{api}/v1/datasets", json={"name": "after-restart", "version": "1"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert declared.status_code == 201, declared.text
    upload = declared.json()["uploads"]["features"]
    put = requests.put(upload["url"], data=b"PAR1 not really parquet", headers=upload.get("headers") or {},
                       timeout=30)
    assert put.ok, put.text   # the grant was served by a live store
    assert requests.get(f"{api}/health", timeout=10).status_code == 200
    assert proc.poll() is None
    assert "restarting it (1 of 3" in log.read_text()


@pytest.mark.parametrize("dev", [{"EVALUATOR_DEV_S3_MAX_RESTARTS": "0"}], indirect=True)
def test_past_the_restart_budget_dev_stops_loudly(dev):
    proc, env, log = dev
    [weed] = poll("the weed child", lambda: weed_children(proc.pid), 30, proc)

    os.kill(weed, signal.SIGKILL)
    returncode = proc.wait(timeout=120)
    output = log.read_text()
    assert returncode == 3, output[-3000:]
    assert "error: s3_unavailable: SeaweedFS (the S3 store) exited with -9" in output
    assert "stopping rather than serving grants into a dead store" in output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{env['EVALUATOR_API_PORT']}/health", timeout=2)
