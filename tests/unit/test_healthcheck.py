"""`evaluator healthcheck`: exit 1 with one line saying why when the API or worker cannot serve."""

from __future__ import annotations

import os
import subprocess
import sys

from evaluator.storage.seaweed import free_port

EVALUATOR = [sys.executable, "-m", "evaluator"]


def healthcheck(role: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVALUATOR_")}
    return subprocess.run([*EVALUATOR, "healthcheck", role, "--timeout", "2"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_api_is_unhealthy_when_nothing_answers_on_its_port():
    result = healthcheck("api", EVALUATOR_API_HOST="0.0.0.0", EVALUATOR_API_PORT=str(free_port()))
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: /health unreachable") and len(result.stdout.splitlines()) == 1


def test_worker_is_unhealthy_without_its_dramatiq_processes(tmp_path):
    from evaluator.commands.healthcheck import dramatiq_processes

    # A /proc of one main process and one zombie worker: not healthy.
    for pid, state in ((10, "S"), (11, "Z")):
        entry = tmp_path / str(pid)
        entry.mkdir()
        (entry / "cmdline").write_bytes(b"\0".join([b"python", b"-m", b"dramatiq", b"evaluator.worker.broker:setup",
                                                    b"evaluator.worker.actors", b""]))
        (entry / "stat").write_text(f"{pid} (python) {state} 1 1 1")
    assert dramatiq_processes(tmp_path) == [10]
