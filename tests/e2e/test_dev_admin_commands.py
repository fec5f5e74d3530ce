"""Operator commands (tokens, db, reconcile) find `evaluator dev`'s database; an unreachable one is one line."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from evaluator.storage.seaweed import wait_for_port
from tests.e2e.conftest import BIN, ROOT
from tests.e2e.test_dev_and_demo import dev_env

pytestmark = pytest.mark.integration


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "evaluator"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_tokens_db_and_reconcile_work_against_a_running_dev(tmp_path, redis_url, images_built):
    images_built("sklearn")
    images_built("onnx")
    env = dev_env(tmp_path, redis_url)
    env.pop("EVALUATOR_DATABASE_URL", None)  # as a new user has it: nothing exported
    dev = subprocess.Popen([str(BIN / "evaluator"), "dev"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        api = f"http://127.0.0.1:{env['EVALUATOR_API_PORT']}"
        wait_for_port(int(env["EVALUATOR_API_PORT"]), 120, proc=dev)
        assert requests.get(api + "/health", timeout=10).status_code == 200

        # When an operator creates a token in another shell, with the same (unexported) settings
        created = run(env, "tokens", "create", "--owner", "bob", "--role", "participant")

        # Then it lands in dev's database: the running API accepts it
        assert created.returncode == 0, created.stdout + created.stderr
        assert "Traceback" not in created.stderr
        token = created.stdout.strip().splitlines()[-1]
        answer = requests.get(api + "/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert "evaluator dev" in created.stderr  # it says which database it used

        status = run(env, "db", "status")
        assert status.returncode == 0 and "applied" in status.stdout and "pending" not in status.stdout, status
        reconciled = run(env, "reconcile")
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert "Traceback" not in reconciled.stderr
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)
        output, _ = dev.communicate(timeout=60)
        print(output[-3000:])  # shown when the test fails


def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path):
    env = {**os.environ, "EVALUATOR_DATA_DIR": str(tmp_path / "nothing-here"),
           "EVALUATOR_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/evaluator_does_not_exist"}
    for args in (("tokens", "create", "--owner", "bob"), ("db", "status"), ("tokens", "list")):
        result = run(env, *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 3, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "EVALUATOR_DATABASE_URL" in lines[0], lines
