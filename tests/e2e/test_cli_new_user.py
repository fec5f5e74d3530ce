"""The CLI as a new user meets it, against the live stack: datasets that fail fast, exit codes, blips, messages.

Each test runs `evaluator` as a subprocess (stdout/stderr are pipes, not a terminal) with its own
XDG_CONFIG_HOME, so no login of the person running the tests is read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pyarrow as pa
import pytest

from evaluator.storage.models import Submission
from evaluator.tokens import create_token
from tests.e2e.bundles import sklearn_bundle, sleepy_bundle
from tests.e2e.conftest import BIN, ROOT
from tests.integration.helpers import iris_like, tar_bundle

pytestmark = pytest.mark.integration


def run_cli(stack, *args: str, token: str | None = None, config_home=None, api_url: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "EVALUATOR_TOKEN"}
    env.update(stack.config.to_env())
    env.pop("EVALUATOR_TOKEN", None)
    env.pop("EVALUATOR_CLIENT_CONFIG_FILE", None)  # to_env() renders it empty: none; here XDG_CONFIG_HOME decides
    env["EVALUATOR_API_URL"] = api_url or stack.url
    env["XDG_CONFIG_HOME"] = str(config_home or stack.logs.parent / "xdg")
    if token is not None:
        env["EVALUATOR_TOKEN"] = token
    return subprocess.run([str(BIN / "evaluator"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def restart_api(stack, **overrides) -> None:
    """Stop the API and start it again with `overrides` to its Config (Stack.restart_api)."""
    stack.restart_api(**overrides)


@pytest.fixture
def stack(emptied_shared_stack):
    """The module's one stack, emptied before each test and put back after one that restarts its API."""
    return emptied_shared_stack


def write_tables(folder, features: pa.Table, labels: pa.Table) -> tuple[str, str]:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(features, folder / "features.parquet")
    pq.write_table(labels, folder / "labels.parquet")
    return str(folder / "features.parquet"), str(folder / "labels.parquet")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ` line of stderr; anything else there is progress (`upload [###...]`, `run ... (3s)`)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    others = [line for line in lines if not line.startswith(("error: ", "upload [", "run ", "submission "))]
    assert len(errors) == 1 and not others, result.stderr
    assert "Traceback" not in result.stderr and "<?xml" not in result.stderr
    return errors[0]


def test_an_invalid_dataset_fails_the_upload_and_cannot_back_a_benchmark(stack, tmp_path):
    admin, _ = create_token("admin", "admin")
    features, labels = iris_like(60)
    bad = write_tables(tmp_path / "bad", features.drop(["row_id"]), labels)  # no row ids in the features
    good = write_tables(tmp_path / "good", features, labels)

    # When the admin uploads a dataset whose features have no row id column
    result = run_cli(stack, "datasets", "upload", "--name", "bad", "--features", bad[0], "--labels", bad[1],
                     token=admin)

    # Then the upload waits for registration and fails with the reason
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_error_line(result)
    assert "bad:1" in line and "invalid" in line and "no row id column 'row_id'" in line, line

    # And no benchmark can be made on it: 409 with the reason, exit status 2
    refused = run_cli(stack, "benchmarks", "create", "b1", "--dataset", "bad:1", "--task", "classification",
                      token=admin)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = one_error_line(refused)
    assert "conflict" in line and "bad:1 is invalid" in line and "row id column" in line, line
    assert stack.call("POST", "/v1/benchmarks", admin, json={"id": "b1", "dataset": "bad:1",
                                                             "task": "classification"}).status_code == 409

    # While a good one reports ready, and both are listed with their status
    ok = run_cli(stack, "datasets", "upload", "--name", "good", "--features", good[0], "--labels", good[1],
                 token=admin)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "good:1" in ok.stdout and "ready" in ok.stdout and "60 rows" in ok.stdout
    listing = run_cli(stack, "datasets", "list", token=admin)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line.strip()}
    assert "invalid" in rows["bad:1"] and "ready" in rows["good:1"], listing.stdout
    shown = run_cli(stack, "datasets", "show", "bad:1", token=admin)
    assert shown.returncode == 0 and "no row id column" in shown.stdout, shown.stdout + shown.stderr
    shown = json.loads(run_cli(stack, "datasets", "show", "good:1", "--json", token=admin).stdout)
    assert shown["status"] == "ready" and shown["row_count"] == 60


def test_benchmarks_are_listed_shown_and_repointed_to_ready_datasets_only(stack, tmp_path):
    admin, _ = create_token("admin", "admin")
    features, labels = iris_like(60)
    for name in ("v1", "v2"):
        paths = write_tables(tmp_path / name, features, labels)
        result = run_cli(stack, "datasets", "upload", "--name", "iris", "--version", name[1],
                         "--features", paths[0], "--labels", paths[1], token=admin)
        assert result.returncode == 0, result.stderr
    bad = write_tables(tmp_path / "bad", features, labels.slice(0, 59))
    assert run_cli(stack, "datasets", "upload", "--name", "short", "--features", bad[0], "--labels", bad[1],
                   token=admin).returncode == 1
    created = run_cli(stack, "benchmarks", "create", "iris", "--dataset", "iris:1", "--task", "classification",
                      token=admin)
    assert created.returncode == 0, created.stderr

    listing = run_cli(stack, "benchmarks", "list", token=admin)
    assert listing.returncode == 0 and re.search(r"^iris\s+.*iris:1", listing.stdout, re.M), listing.stdout
    moved = run_cli(stack, "benchmarks", "update", "iris", "--dataset", "iris:2", "--primary-metric", "f1_macro",
                    token=admin)
    assert moved.returncode == 0, moved.stderr
    shown = json.loads(run_cli(stack, "benchmarks", "show", "iris", "--json", token=admin).stdout)
    assert shown["dataset"] == "iris:2" and shown["primary_metric"] == "f1_macro"
    text = run_cli(stack, "benchmarks", "show", "iris", token=admin)
    assert "iris:2" in text.stdout and "f1_macro" in text.stdout, text.stdout

    refused = run_cli(stack, "benchmarks", "update", "iris", "--dataset", "short:1", token=admin)
    assert refused.returncode == 2 and "short:1 is invalid" in one_error_line(refused)
    patched = stack.call("PATCH", "/v1/benchmarks/iris", admin, json={"dataset": "short:1"})
    assert patched.status_code == 409 and "row ids" in patched.json()["error"]["message"]
    assert stack.call("GET", "/v1/benchmarks/iris", admin).json()["dataset"] == "iris:2"


def test_exit_codes_tell_usage_auth_unreachable_and_json_errors_are_json(stack, tmp_path):
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "model.tar.gz"
    bundle.write_bytes(sklearn_bundle())

    unauthorized = run_cli(stack, "submit", str(bundle), "--benchmark", "iris", token="evt_not-a-token")
    assert unauthorized.returncode == 2 and "unauthorized" in one_error_line(unauthorized)
    missing = run_cli(stack, "runs", "show", "00000000-0000-0000-0000-000000000000", token=alice)
    assert missing.returncode == 2 and "not_found" in one_error_line(missing)
    usage = run_cli(stack, "submit", token=alice)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    unreachable = run_cli(stack, "runs", "list", token=alice, api_url="http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot reach the API" in one_error_line(unreachable)

    as_json = run_cli(stack, "runs", "show", "00000000-0000-0000-0000-000000000000", "--json", token=alice)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "not_found", as_json.stdout
    as_json = run_cli(stack, "runs", "list", "--json", token=alice, api_url="http://127.0.0.1:9")
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["error"]["code"] == "unreachable"

    helped = run_cli(stack, "--help")
    assert helped.returncode == 0 and "exit status" in helped.stdout
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert code in helped.stdout.split("exit status", 1)[1]


def test_login_saves_the_token_so_commands_need_no_export(stack, tmp_path):
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    home = tmp_path / "config-home"

    refused = run_cli(stack, "login", "--token", "evt_wrong", config_home=home)
    assert refused.returncode == 2 and "unauthorized" in one_error_line(refused)
    assert not (home / "evaluator").exists() or not any((home / "evaluator").iterdir())

    result = run_cli(stack, "login", "--token", alice, config_home=home)
    assert result.returncode == 0, result.stderr
    saved = home / "evaluator" / "config.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())["token"] == alice and alice not in result.stdout + result.stderr

    listing = run_cli(stack, "runs", "list", config_home=home)  # no EVALUATOR_TOKEN, no --token
    assert listing.returncode == 0 and "(0 of 0)" in listing.stdout, listing.stdout + listing.stderr


FAILING_PREDICT = b"""
def load(model_path):
    return None


def predict(batch, model):
    import catboost  # not in the image: nothing can be installed at run time
    return model.predict(batch)
"""

NO_MODEL_PREDICT = b"""
import numpy as np

def predict(batch):
    return np.where(batch["f0"].to_numpy() > 1.5, 1, 0)
"""


def test_a_failed_run_names_the_exception_and_the_command_that_shows_the_log(stack, images_built, tmp_path):
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    model = tar_bundle({"evaluator.yaml": b"name: needs-catboost\nversion: 1\nframework: sklearn\n"
                                          b"model: model.joblib\npredict: predict.py:predict\n",
                        "model.joblib": b"unused", "predict.py": FAILING_PREDICT})
    bundle = tmp_path / "failing.tar.gz"
    bundle.write_bytes(model)

    result = run_cli(stack, "submit", str(bundle), "--benchmark", "iris", "--wait", token=alice)

    assert result.returncode == 1, result.stdout + result.stderr
    run_id = re.search(r"^run (\S+)", result.stdout, re.M).group(1)
    failure = next(line for line in result.stdout.splitlines() if "failure:" in line)
    assert "sandbox_error" in failure and "ModuleNotFoundError: No module named 'catboost'" in failure, failure
    assert f"evaluator runs logs {run_id}" in failure, failure
    assert "\r" not in result.stderr  # not a terminal: plain lines
    logs = run_cli(stack, "runs", "logs", run_id, token=alice)
    assert logs.returncode == 0 and "No module named 'catboost'" in logs.stdout


def test_a_code_only_bundle_runs_and_skipped_metrics_say_why(stack, images_built, tmp_path):
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "rule.tar.gz"  # a baseline: a one-argument predict and no model file at all
    bundle.write_bytes(tar_bundle({"evaluator.yaml": b"name: rule\nversion: 1\nframework: sklearn\n"
                                                     b"predict: predict.py:predict\n",
                                   "predict.py": NO_MODEL_PREDICT}))

    result = run_cli(stack, "submit", str(bundle), "--benchmark", "iris", "--wait", token=alice)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout and "accuracy" in result.stdout
    skipped = [line for line in result.stdout.splitlines() if "skipped" in line and "log_loss" in line]
    assert skipped and "no proba__<class> columns" in skipped[0], result.stdout
    run_id = re.search(r"^run (\S+)", result.stdout, re.M).group(1)
    shown = run_cli(stack, "runs", "show", run_id, token=alice)
    assert "roc_auc" in shown.stdout and "no proba__<class> columns" in shown.stdout, shown.stdout


def test_submit_wait_rides_out_an_api_restart_and_reports_the_result(stack, images_built, tmp_path):
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "sleepy.tar.gz"
    bundle.write_bytes(sleepy_bundle(12))
    env = {key: value for key, value in os.environ.items() if key != "EVALUATOR_TOKEN"}
    env.update({**stack.config.to_env(), "EVALUATOR_API_URL": stack.url, "EVALUATOR_TOKEN": alice,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    waiting = subprocess.Popen([str(BIN / "evaluator"), "submit", str(bundle), "--benchmark", "iris", "--wait"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Given the run is being evaluated
        stack.wait_for("/v1/runs", alice, lambda page: any(r["status"] == "running" for r in page["items"]), 120)
        # When the API dies and comes back while the CLI waits
        restart_api(stack)
        out, err = waiting.communicate(timeout=300)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    # Then it reports the run's final result, exit status 0
    assert waiting.returncode == 0, out + err
    assert "succeeded" in out and "accuracy" in out and "Traceback" not in err
    # a 12 s run is seen running: progress is plain lines, one per status, when stderr is not a terminal
    assert re.search(r"run \w+ running \(\d+s\)", err) and "\r" not in err, err


def test_store_problems_are_one_sentence_and_an_expired_grant_is_asked_again_once(stack, tmp_path):
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "model.tar.gz"
    bundle.write_bytes(sklearn_bundle())

    # Given an API whose grants are expired when issued
    restart_api(stack, upload_expiry_s=0)
    expired = run_cli(stack, "submit", str(bundle), "--benchmark", "iris", token=alice)
    line = one_error_line(expired)
    assert expired.returncode == 3 and "expired" in line, line
    assert Submission.select().where(Submission.owner == "alice").count() == 2  # one new grant, once

    # Given an API whose grants point to an object store nobody answers on
    restart_api(stack, upload_expiry_s=900, s3_public_endpoint_url="http://127.0.0.1:9")
    down = run_cli(stack, "submit", str(bundle), "--benchmark", "iris", token=alice)
    line = one_error_line(down)
    assert down.returncode == 3 and "cannot reach the object store" in line, line
