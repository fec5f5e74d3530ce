"""The webhook secret: no entry point starts with the published placeholder, and `evaluator dev` makes its own.

`change-me-events-token` is printed in .env.example and docker-compose.yml; a
webhook that accepts it lets anyone forge upload events (runs owned by another
participant, her quota burnt).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest
import requests

from evaluator.config import EVENTS_TOKEN_PLACEHOLDER
from evaluator.storage.seaweed import free_port, wait_for_port
from tests.conftest import BIN
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.integration

ENTRY_POINTS = {
    "evaluator api": [str(BIN / "evaluator"), "api"],
    "gunicorn": [str(BIN / "gunicorn"), "-c", str(ROOT / "http" / "gunicorn.conf.py")],
    "evaluator worker": [str(BIN / "evaluator"), "worker", "--processes", "1"],
    "dramatiq": [str(BIN / "dramatiq"), "evaluator.worker.broker:setup", "evaluator.worker.actors",
                 "--processes", "1", "--threads", "1"],
}


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALUATOR_")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


def run_until_exit(command: list[str], env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    """Run a command that must exit on its own; one that keeps serving is stopped and reported."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{command} kept running (it started with an unusable events token):\n{err[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


UNUSABLE = {"unset": None, "empty": "", "blank": "  ", "placeholder": EVENTS_TOKEN_PLACEHOLDER}


@pytest.mark.parametrize("token", list(UNUSABLE.values()), ids=list(UNUSABLE))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_api_and_worker_refuse_to_start_without_a_real_events_token(entry, token, redis_url, database_url):
    settings = {"EVALUATOR_API_PORT": str(free_port()), "EVALUATOR_REDIS_URL": redis_url,
                "EVALUATOR_DATABASE_URL": database_url, "EVALUATOR_BROKER_NAMESPACE": f"tok-{time.monotonic_ns()}"}
    if token is not None:
        settings["EVALUATOR_EVENTS_TOKEN"] = token
    result = run_until_exit(ENTRY_POINTS[entry], clean_env(**settings))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "EVALUATOR_EVENTS_TOKEN" in line]
    assert lines and all(len(line) < 400 for line in lines), result.stderr[-3000:]
    assert "EVALUATOR_EVENTS_TOKEN is" in lines[0]


PLACEHOLDER_SECRETS = {
    "s3-secret": {"EVALUATOR_S3_SECRET_KEY": "change-me-minio-secret"},
    "db-password": {"EVALUATOR_DATABASE_URL": "postgresql://evaluator:change-me-postgres@127.0.0.1/x"}}


@pytest.mark.parametrize("secret", sorted(PLACEHOLDER_SECRETS))
@pytest.mark.parametrize("entry", ["evaluator api", "evaluator worker"])
def test_the_cli_entry_points_refuse_other_placeholder_secrets(entry, secret, redis_url, database_url):
    """A `change-me...` S3 secret or database password copied from an example is no secret either."""
    settings = {"EVALUATOR_API_PORT": str(free_port()), "EVALUATOR_REDIS_URL": redis_url,
                "EVALUATOR_DATABASE_URL": database_url, "EVALUATOR_EVENTS_TOKEN": "a-real-token-0123456789",
                **PLACEHOLDER_SECRETS[secret]}
    result = run_until_exit(ENTRY_POINTS[entry], clean_env(**settings))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "is a placeholder (change-me...)" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_webhook_refuses_an_empty_or_placeholder_token_whatever_the_config_says(config, db, blobs, sent):
    import falcon.testing

    from evaluator.api.app import create_app

    for configured in ("", " ", EVENTS_TOKEN_PLACEHOLDER):
        app = create_app(config.replace(events_token=configured), database=db, blobs=blobs,
                         queues=sent.as_queues(), health_checks={})
        client = falcon.testing.TestClient(app)
        for sent_token in ("", EVENTS_TOKEN_PLACEHOLDER, configured):
            response = client.simulate_post("/v1/events/s3", json={"Records": []},
                                            headers={"Authorization": f"Bearer {sent_token}"})
            assert response.status_code in (401, 503), (configured, sent_token, response.text)
            assert set(response.json["error"]) >= {"code", "message"}


def dev_env(tmp_path, redis_url: str) -> dict[str, str]:
    return clean_env(EVALUATOR_DATA_DIR=str(tmp_path / "data"), EVALUATOR_API_PORT=str(free_port()),
                     EVALUATOR_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", EVALUATOR_REDIS_URL=redis_url,
                     EVALUATOR_BROKER_NAMESPACE=f"devtok-{time.monotonic_ns()}")


def start_dev(env: dict[str, str]) -> subprocess.Popen:
    dev = subprocess.Popen([str(BIN / "evaluator"), "dev"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    port = int(env["EVALUATOR_API_PORT"])
    wait_for_port(port, 120, proc=dev)
    deadline = time.monotonic() + 60
    while not healthy(port):
        assert time.monotonic() < deadline, "evaluator dev did not become healthy"
        time.sleep(0.3)
    return dev


def healthy(port: int) -> bool:
    """Whether /health answers 200; a reset connection is not an answer (the API may still be coming up)."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


def stop_dev(dev: subprocess.Popen) -> str:
    os.killpg(dev.pid, signal.SIGINT)
    output, _ = dev.communicate(timeout=60)
    return output


def webhook(env: dict[str, str], token: str) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{env['EVALUATOR_API_PORT']}/v1/events/s3", json={"Records": []},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_dev_generates_a_random_events_token_keeps_it_and_wires_the_filer_webhook(
        tmp_path, redis_url, images_built):
    images_built("sklearn")
    images_built("onnx")
    env = dev_env(tmp_path, redis_url)
    path = tmp_path / "data" / "events.token"
    dev = start_dev(env)
    try:
        token = path.read_text().strip()
        assert len(token) >= 32 and token != EVENTS_TOKEN_PLACEHOLDER
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert webhook(env, token).status_code == 200
        assert webhook(env, EVENTS_TOKEN_PLACEHOLDER).status_code == 401
        toml = (tmp_path / "data" / "s3" / "conf" / "notification.toml").read_text()
        assert f'bearer_token = "{token}"' in toml  # the filer's webhook sends what the API expects
    finally:
        output = stop_dev(dev)
    assert token not in output  # the secret is not printed

    dev = start_dev(env)  # a restart reuses the token the filer and operators already have
    try:
        assert path.read_text().strip() == token
        assert webhook(env, token).status_code == 200
    finally:
        stop_dev(dev)
