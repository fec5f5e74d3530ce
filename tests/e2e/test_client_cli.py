"""The participant's CLI against the live stack: submit --wait with progress, and one-line errors."""

from __future__ import annotations

import os
import subprocess

import pytest

from evaluator.storage.models import ApiToken
from evaluator.tokens import create_token, revoke_token
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.conftest import BIN, ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(emptied_shared_stack):
    """No test here kills a process: they share the module's stack, emptied before each."""
    return emptied_shared_stack


def cli(stack, token: str, *args: str, api_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.config.to_env(), "EVALUATOR_API_URL": api_url or stack.url, "EVALUATOR_TOKEN": token}
    return subprocess.run([str(BIN / "evaluator"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_submit_wait_shows_progress_and_final_metrics_then_lists_and_ranks(stack, images_built, tmp_path):
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "logreg.tar.gz"
    bundle.write_bytes(sklearn_bundle())

    result = cli(stack, alice, "submit", str(bundle), "--benchmark", "iris", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upload [#########################] 100%" in result.stderr
    assert "succeeded" in result.stderr and "succeeded" in result.stdout
    assert "accuracy" in result.stdout and "Traceback" not in result.stderr

    listing = cli(stack, alice, "runs", "list")
    assert listing.returncode == 0 and "succeeded" in listing.stdout and "(1 of 1)" in listing.stdout
    board = cli(stack, alice, "leaderboard", "iris")
    assert board.returncode == 0 and "alice" in board.stdout and "   1  alice" in board.stdout


def test_expected_failures_are_one_line_errors_with_a_non_zero_exit(stack, tmp_path):
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "model.tar.gz"
    bundle.write_bytes(sklearn_bundle())
    revoked, row = create_token("carol", "participant")
    revoke_token(str(row.id))
    assert ApiToken.get_by_id(row.id).revoked_at is not None

    cases = {
        "expired token": cli(stack, revoked, "submit", str(bundle), "--benchmark", "iris"),
        "missing file": cli(stack, alice, "submit", str(tmp_path / "nope.tar.gz"), "--benchmark", "iris"),
        "unreachable API": cli(stack, alice, "submit", str(bundle), "--benchmark", "iris",
                               api_url="http://127.0.0.1:9"),
    }
    expected = {"expired token": "unauthorized", "missing file": "does not exist", "unreachable API": "cannot reach"}
    for name, result in cases.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, name
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected[name] in lines[0], (name, result.stderr)
