"""The README's first command: `evaluator demo`, on its own and on a running `evaluator dev`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from evaluator.storage.seaweed import free_port, wait_for_port
from tests.e2e.conftest import BIN, ROOT

pytestmark = pytest.mark.integration


def dev_env(tmp_path, redis_url) -> dict:
    return {**os.environ, "EVALUATOR_DATA_DIR": str(tmp_path / "data"), "EVALUATOR_API_PORT": str(free_port()),
            "EVALUATOR_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "EVALUATOR_REDIS_URL": redis_url,
            "EVALUATOR_BROKER_NAMESPACE": f"demo-{os.getpid()}-{time.monotonic_ns()}"}


def check_demo_output(stdout: str) -> dict:
    result = json.loads(stdout[stdout.index("{"):])
    assert [run["status"] for run in result["runs"]] == ["succeeded", "succeeded"]
    frameworks = sorted(run["provenance"]["framework"] for run in result["runs"])
    assert frameworks == ["onnx", "sklearn"]
    entries = result["leaderboard"]["entries"]
    assert sorted(e["participant"] for e in entries) == ["alice", "bob"]
    assert all(0.8 < e["score"] <= 1.0 and e["ci"]["low"] <= e["score"] <= e["ci"]["high"] for e in entries)
    return result


def check_dev_metrics(text: str) -> None:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["evaluator_workers_live"].samples[0].value == 1
    finished = {s.labels["status"]: s.value for s in families["evaluator_runs_finished"].samples}
    assert finished["succeeded"] >= 2
    assert sum(s.value for s in families["dramatiq_messages"].samples if s.labels["actor_name"] == "evaluate_run") >= 2
    assert [s for s in families["evaluator_http_requests"].samples if s.labels["route"].startswith("/v1/runs/{run_id}")]


@pytest.fixture
def demo_images(images_built):
    images_built("sklearn")
    images_built("onnx")


def test_demo_starts_the_embedded_platform_and_prints_a_leaderboard(tmp_path, redis_url, demo_images):
    result = subprocess.run([str(BIN / "evaluator"), "demo", "--json"], cwd=ROOT, env=dev_env(tmp_path, redis_url),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "starting the embedded platform" in result.stdout
    check_demo_output(result.stdout)
    assert (tmp_path / "data" / "evaluator.db").exists()  # SQLite in the data folder, which persists


def test_demo_reuses_a_running_dev_and_ctrl_c_stops_everything(tmp_path, demo_images):
    env = dev_env(tmp_path, "redis://127.0.0.1:1/0")  # no Redis: the in-process broker, clearly logged
    dev = subprocess.Popen([str(BIN / "evaluator"), "dev"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        api_port = int(env["EVALUATOR_API_PORT"])
        wait_for_port(api_port, 120, proc=dev)
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=10).status_code == 200
        demo = subprocess.run([str(BIN / "evaluator"), "demo", "--json"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert "using the running platform" in demo.stdout
        check_demo_output(demo.stdout)
        # its in-process worker beats (no Redis: in memory), and /metrics has the runs it ended
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=10).json()["status"] == "ok"
        # Dramatiq counts a message when its actor returns, and the actor draws the plots after the run is
        # recorded `succeeded`: the second count may come a moment after the demo saw both runs end.
        deadline = time.monotonic() + 60
        while True:
            try:
                check_dev_metrics(requests.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10).text)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C
        output, _ = dev.communicate(timeout=60)
    assert "IN-PROCESS broker" in output
    s3_port = int(env["EVALUATOR_S3_ENDPOINT_URL"].rsplit(":", 1)[1])
    for port in (api_port, s3_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
