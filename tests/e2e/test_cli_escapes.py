"""The CLI never writes a control character it did not produce: a model's log and hostile records, live stack."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from evaluator.storage.models import Run
from tests.e2e.conftest import BIN, ROOT
from tests.integration.helpers import tar_bundle
from tests.terminal_checks import (
    HOSTILE_RECORD_TEXT,
    HOSTILE_TEXT,
    hostile_log_predict,
    unsafe_characters,
)

pytestmark = pytest.mark.integration

# Writes the hostile text (and raw invalid UTF-8 around an ESC) to its log, then predicts a constant.
HOSTILE_LOG_PREDICT = hostile_log_predict("return np.zeros(len(batch), dtype=int)", imports="import numpy as np\n")


def cli(stack, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.config.to_env(), "EVALUATOR_API_URL": stack.url, "EVALUATOR_TOKEN": token}
    return subprocess.run([str(BIN / "evaluator"), *args], cwd=ROOT, env=env, capture_output=True, timeout=120)


def assert_clean(result: subprocess.CompletedProcess, *, json_output: bool = False) -> None:
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    for name, output in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert unsafe_characters(output) == [], (name, output)
    if json_output:
        assert result.stdout.decode().isascii()


@pytest.fixture(scope="module")
def stack(shared_stack):
    """These tests only read the one run below: one stack for the module."""
    return shared_stack


@pytest.fixture(scope="module")
def hostile_run(stack, images_built, tmp_path_factory):
    """A succeeded run whose log holds the hostile text; returns (admin token, alice token, run id)."""
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    manifest = b"name: noisy\nversion: 1\nframework: sklearn\nmodel: model.bin\npredict: predict.py:predict\n"
    bundle = tmp_path_factory.mktemp("hostile") / "noisy.tar.gz"
    bundle.write_bytes(tar_bundle({"evaluator.yaml": manifest, "model.bin": b"unused",
                                   "predict.py": HOSTILE_LOG_PREDICT.encode()}))
    result = cli(stack, alice, "submit", str(bundle), "--benchmark", "iris", "--wait", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr, stack.log_tail())
    assert_clean(result, json_output=True)
    return admin, alice, json.loads(result.stdout)["id"]


def test_runs_logs_shows_a_models_escapes_as_text_and_keeps_its_lines(stack, hostile_run):
    admin, alice, run_id = hostile_run
    # The stored log is the model's, byte for byte (it is escaped only when printed).
    raw = stack.call("GET", f"/v1/runs/{run_id}/logs", admin).content
    assert HOSTILE_TEXT.encode() in raw

    for token in (admin, alice):
        result = cli(stack, token, "runs", "logs", run_id)

        assert result.returncode == 0
        assert_clean(result)
        out = result.stdout.decode()
        line = next(raw_line for raw_line in out.split("\n") if "HOSTILE-BEGIN" in raw_line)
        assert "HOSTILE-END" in line  # the \r, \u2028 and \x85 inside did not break (or overwrite) the line
        assert "\\x1b[2J" in line and "\\x0d" in line and "\\u202e" in line and "\\x00" in line and "\\x9b" in line
        assert "[bold]markup[/bold]" in line  # markup is not interpreted, just shown
        assert "raw \ufffd\\x9b\\x1bc bytes" in out  # invalid UTF-8 replaced, C1 and ESC shown


def test_runs_show_list_and_leaderboard_escape_every_server_field(stack, hostile_run):
    # Given a record whose owner, failure and metric names hold terminal controls (as an
    # older row or any unsanitised path could)
    admin, alice, run_id = hostile_run
    row = Run.get_by_id(run_id)
    metrics = row.metrics
    metrics["metrics"][HOSTILE_RECORD_TEXT] = HOSTILE_RECORD_TEXT
    Run.update(owner="alice" + HOSTILE_RECORD_TEXT, failure_code="x" + HOSTILE_RECORD_TEXT,
               failure_message=HOSTILE_RECORD_TEXT, metrics=metrics).where(Run.id == run_id).execute()

    # When an admin prints it every way the CLI can
    results = {
        "runs show": cli(stack, admin, "runs", "show", run_id),
        "runs list": cli(stack, admin, "runs", "list"),
        "leaderboard": cli(stack, admin, "leaderboard", "iris"),
    }

    # Then every byte written is printable (newlines only where the CLI made lines)
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert_clean(result)
        out = result.stdout.decode()
        assert "\\x1b[2J" in out, (name, out)
    shown = results["runs show"].stdout.decode().rstrip("\n").split("\n")
    assert len(shown) == len([line for line in shown if line.startswith(("run ", "  "))])  # no forged lines
    failure = next(line for line in shown if line.startswith("  failure: "))
    assert failure.endswith("[link=http://x]y[/link]")  # the whole message on one line

    # And --json is exact JSON in printable ASCII, holding the values unchanged
    result = cli(stack, admin, "runs", "show", run_id, "--json")
    assert_clean(result, json_output=True)
    record = json.loads(result.stdout)
    assert record["failure"]["message"] == HOSTILE_RECORD_TEXT and record["owner"] == "alice" + HOSTILE_RECORD_TEXT


def test_an_error_message_from_the_api_is_printed_on_one_escaped_line(stack, hostile_run):
    admin, _, _ = hostile_run

    result = cli(stack, admin, "runs", "show", "nope" + HOSTILE_RECORD_TEXT)

    assert result.returncode == 2  # a request the API refused (404): exit status 2
    assert_clean(result)
    lines = result.stderr.decode().strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
