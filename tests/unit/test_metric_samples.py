"""Sample files per host: processes that record into one folder are summed; a dead process's files go.

Each recording process is a real child process (prometheus_client's mode is
chosen at its first import, so it cannot be switched inside the test process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evaluator.config import Config
from evaluator.intake import Outcome
from evaluator.observability import folders
from evaluator.observability.scrape import SampleFiles

ROOT = Path(__file__).resolve().parents[2]

RECORD = """
import os, sys
from evaluator.config import Config
from evaluator.observability import folders
config = Config(metrics_dir=sys.argv[1])
folders.use_folder(config, sys.argv[2], fresh=sys.argv[3] == "fresh")
from evaluator.observability import record
record.request("GET", "/v1/runs/{run_id}", 200, 0.02)
record.run_ended("failed", "timeout", {"stages": {"queued_at": "2026-01-01T00:00:00Z",
                                                   "picked_up_at": "2026-01-01T00:00:02Z"}})
from prometheus_client import Gauge
Gauge("evaluator_test_busy", "busy", multiprocess_mode="livesum").set(1)
print(os.getpid())
"""


def record_in_child(metrics_dir: Path, role: str = "api", fresh: bool = False) -> int:
    result = subprocess.run([sys.executable, "-c", RECORD, str(metrics_dir), role, "fresh" if fresh else "keep"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=120, check=True)
    return int(result.stdout.strip())


def merged(config: Config) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in SampleFiles(lambda: folders.host_folders(config)).collect():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_processes_of_one_host_are_summed_across_roles_and_dead_ones_lose_only_their_live_gauges(tmp_path):
    config = Config(metrics_dir=str(tmp_path))
    for role in ("api", "worker", "sqs"):  # (a second process of one role would forget the first, dead, one)
        record_in_child(tmp_path, role)
    samples = merged(config)
    route = (("method", "GET"), ("route", "/v1/runs/{run_id}"), ("status", "200"))
    assert samples[("evaluator_http_requests_total", route)] == 3
    assert samples[("evaluator_run_failures_total", (("code", "timeout"),))] == 3
    assert samples[("evaluator_runs_finished_total", (("status", "failed"),))] == 3
    assert samples[("evaluator_run_stage_duration_seconds_count", (("stage", "queued"),))] == 3
    assert samples[("evaluator_run_stage_duration_seconds_sum", (("stage", "queued"),))] == 6.0
    assert samples[("evaluator_run_stage_duration_seconds_bucket", (("le", "2.5"), ("stage", "queued")))] == 3
    assert samples[("evaluator_run_stage_duration_seconds_bucket", (("le", "1.0"), ("stage", "queued")))] == 0
    # every known series is there before its first event, at 0
    assert samples[("evaluator_intake_events_total", (("kind", "other"), ("outcome", "ignored")))] == 0
    assert samples[("evaluator_run_failures_total", (("code", "out_of_memory"),))] == 0
    assert samples[("evaluator_run_stage_duration_seconds_count", (("stage", "scoring"),))] == 0
    # the children exited without marking themselves dead (like a SIGKILL): their live gauges are not counted
    assert not [key for key in samples if key[0] == "evaluator_test_busy"]


def test_a_fresh_folder_starts_from_zero_and_a_kept_one_forgets_only_dead_processes(tmp_path):
    config = Config(metrics_dir=str(tmp_path))
    dead = record_in_child(tmp_path, "worker")
    live_file = tmp_path / "worker" / f"counter_{os.getpid()}.db"
    live_file.write_bytes(b"")  # a file of a process that exists (this one)
    assert (tmp_path / "worker" / f"counter_{dead}.db").exists()
    assert folders.forget_dead(tmp_path / "worker") >= 1
    assert not (tmp_path / "worker" / f"counter_{dead}.db").exists() and live_file.exists()
    live_file.unlink()

    record_in_child(tmp_path, "api")
    record_in_child(tmp_path, "api", fresh=True)  # the gunicorn master on start
    route = (("method", "GET"), ("route", "/v1/runs/{run_id}"), ("status", "200"))
    assert merged(config)[("evaluator_http_requests_total", route)] == 1


def test_the_default_folder_is_per_deployment():
    assert Config(broker_namespace="a").metrics_folder != Config(broker_namespace="b").metrics_folder
    assert Config(metrics_dir="/x").metrics_folder == "/x"
    assert folders.folder(Config(metrics_dir="/x"), "worker") == Path("/x/worker")


def test_intake_outcomes_are_new_duplicate_or_ignored():
    assert (Outcome("k", "run", "created").result, Outcome("k", "run", "created").kind) == ("new", "run")
    assert Outcome("k", "run", "existing (queued)").result == "duplicate"
    assert (Outcome("k", "dataset", "registration queued").result, Outcome("k", "dataset", "").kind) == (
        "new", "dataset")
    assert Outcome("k", "dataset", "already ready").result == "duplicate"
    assert (Outcome("k", "ignored", "not ours").result, Outcome("k", "ignored", "x").kind) == ("ignored", "other")
