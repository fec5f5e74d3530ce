"""The scoring server: started ahead, imports done, a fresh forked child per scoring; replaced when it died.

Through isolated_scoring.score_isolated, the entry the worker, rescoring and `evaluator evaluate` use. A run
whose predictions CSV is a FIFO holds its child mid-scoring (blocked opening it, stage "started") for as long
as the test wants: the test looks at the processes from should_cancel, which the parent calls while it waits.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.config import Config
from evaluator.errors import InfrastructureError, PredictionsInvalid, RunCancelled
from evaluator.isolated_scoring import score_isolated
from evaluator.scoring_standby import STANDBY
from evaluator.settings import Scoring

pytestmark = pytest.mark.integration


@pytest.fixture
def config(tmp_path):
    config = Config(work_dir=str(tmp_path / "worker"))
    yield config
    STANDBY.close()


def files(tmp_path, n: int = 300):
    ids = [f"id-{i:05d}" for i in range(n)]
    y = np.arange(n) % 3
    pq.write_table(pa.table({"row_id": ids, "target": y}), tmp_path / "labels.parquet")
    pq.write_table(pa.table({"row_id": ids, "prediction": y}), tmp_path / "predictions.parquet")
    return tmp_path / "labels.parquet", tmp_path / "predictions.parquet"


def score(config, tmp_path, name: str, *, labels, predictions, **options):
    return score_isolated(Scoring("classification"), labels, predictions, work_dir=tmp_path / name, config=config,
                          **options)


def scored_by(tmp_path, name: str) -> tuple[int, int]:
    result = json.loads((tmp_path / name / "scoring-result.json").read_text())
    return result["pid"], result["parent"]


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def opened(pid: int) -> list[str]:
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]


def rchar(pid: int) -> int:
    """Bytes its main thread read (the process's /proc/<pid>/io adds those of the children it reaped)."""
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/task/{pid}/io").read_text().splitlines()
                if line.startswith("rchar:"))


def held_run(tmp_path, name: str = "held.csv") -> Path:
    """A predictions CSV that keeps the child scoring until the run is cancelled, times out or is killed."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    return fifo


class WhileScoring:
    """should_cancel: calls `look(child pid)` once the server's child is scoring run `work_dir`; then `cancel()`."""

    def __init__(self, server_pid: int, work_dir: Path, look=None, cancel=lambda: False) -> None:
        self.server_pid, self.work_dir, self.look, self.cancel = server_pid, work_dir, look, cancel
        self.child: int | None = None
        self.started = threading.Event()

    def __call__(self) -> bool:
        if self.child is None:
            if not (self.work_dir / "scoring-result.json").exists():
                return False  # not at its stage "started" yet
            self.child = scored_by(self.work_dir.parent, self.work_dir.name)[0]
            if self.look is not None:
                self.look(self.child)
            self.started.set()
        return self.cancel()


def test_each_run_is_a_fresh_child_forked_by_one_server_that_reads_no_run_file(config, tmp_path):
    labels, predictions = files(tmp_path, n=20_000)
    STANDBY.keep(config)
    server = STANDBY.server(config)
    score(config, tmp_path, "warm", labels=labels, predictions=predictions)  # the server's imports are done
    before = rchar(server.pid)

    first, _ = score(config, tmp_path, "a", labels=labels, predictions=predictions)
    second, _ = score(config, tmp_path, "b", labels=labels, predictions=predictions)

    assert first["metrics"]["accuracy"] == second["metrics"]["accuracy"] == 1.0
    (a, a_parent), (b, b_parent) = scored_by(tmp_path, "a"), scored_by(tmp_path, "b")
    assert a != b and a_parent == b_parent == server.pid
    assert STANDBY.server(config) is server and server.alive()
    assert a not in children(server.pid) and b not in children(server.pid)  # each scored one run, then was reaped
    # NOTE: two runs' labels and predictions are ~10x what the server read (its job lines and acks)
    assert rchar(server.pid) - before < min(labels.stat().st_size, predictions.stat().st_size) // 4
    assert len(os.listdir(f"/proc/{server.pid}/task")) == 1  # one thread: what makes fork safe


def test_while_a_child_scores_the_server_holds_no_run_file_and_a_cancel_kills_only_the_child(config, tmp_path):
    labels, predictions = files(tmp_path)
    STANDBY.keep(config)
    server = STANDBY.server(config)
    seen: dict = {}

    def look(child: int) -> None:
        seen.update(server_files=opened(server.pid), parent=int(Path(f"/proc/{child}/stat").read_text().split()[3]),
                    child_session=os.getsid(child), server_session=os.getsid(server.pid))

    watch = WhileScoring(server.pid, tmp_path / "a", look, cancel=lambda: True)
    with pytest.raises(RunCancelled):
        score(config, tmp_path, "a", labels=labels, predictions=tmp_path / "p.parquet",
              csv_source=held_run(tmp_path), should_cancel=watch)

    assert seen["parent"] == server.pid
    assert seen["child_session"] == watch.child != seen["server_session"]  # its own session: a kill cannot reach us
    assert not [path for path in seen["server_files"] if str(tmp_path) in path and "/worker/scoring/" not in path]
    assert not Path(f"/proc/{watch.child}").exists() and server.alive()
    document, _ = score(config, tmp_path, "b", labels=labels, predictions=predictions)
    assert document["metrics"]["accuracy"] == 1.0 and scored_by(tmp_path, "b")[1] == server.pid


def test_a_child_killed_mid_scoring_ends_the_run_as_over_the_memory_limit(config, tmp_path):
    labels, _ = files(tmp_path)
    STANDBY.keep(config)
    server = STANDBY.server(config)
    stats: dict = {}
    kill = WhileScoring(server.pid, tmp_path / "a", lambda child: os.kill(child, signal.SIGKILL))

    with pytest.raises(PredictionsInvalid) as raised:
        score(config, tmp_path, "a", labels=labels, predictions=tmp_path / "p.parquet", csv_source=held_run(tmp_path),
              stats=stats, should_cancel=kill)

    assert raised.value.code == "predictions_invalid" and "memory limit" in raised.value.message
    assert stats["exit"] == -signal.SIGKILL and stats["peak_rss_bytes"] > 0
    assert server.alive()


def test_the_timeout_kills_the_child_and_leaves_the_server(config, tmp_path):
    labels, predictions = files(tmp_path)
    quick = config.replace(scoring_timeout_s=1)
    STANDBY.keep(quick)
    server = STANDBY.server(quick)
    watch = WhileScoring(server.pid, tmp_path / "a")

    with pytest.raises(PredictionsInvalid) as raised:
        score(quick, tmp_path, "a", labels=labels, predictions=tmp_path / "p.parquet", csv_source=held_run(tmp_path),
              should_cancel=watch)

    assert "took longer than 1 s" in raised.value.message
    assert watch.child is not None and not Path(f"/proc/{watch.child}").exists()
    assert STANDBY.server(quick) is server and server.alive()
    document, _ = score(quick, tmp_path, "b", labels=labels, predictions=predictions)
    assert document["metrics"]["accuracy"] == 1.0


def test_two_threads_score_at_once_through_one_server(config, tmp_path):
    labels, predictions = files(tmp_path)
    STANDBY.keep(config)
    server = STANDBY.server(config)
    other_done = threading.Event()
    watch = WhileScoring(server.pid, tmp_path / "held", cancel=other_done.is_set)
    held: dict = {}

    def hold() -> None:
        try:
            score(config, tmp_path, "held", labels=labels, predictions=tmp_path / "p.parquet",
                  csv_source=held_run(tmp_path), should_cancel=watch)
        except RunCancelled as ex:
            held["ended"] = ex

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert watch.started.wait(60)
        document, _ = score(config, tmp_path, "b", labels=labels, predictions=predictions)
        still_scoring = watch.child in children(server.pid)
    finally:
        other_done.set()
        holder.join(60)

    assert document["metrics"]["accuracy"] == 1.0 and scored_by(tmp_path, "b")[1] == server.pid
    assert still_scoring and isinstance(held.get("ended"), RunCancelled)  # cancelled once b was scored


def test_a_server_killed_between_runs_is_replaced_and_the_next_run_scores(config, tmp_path):
    labels, predictions = files(tmp_path)
    STANDBY.keep(config)
    killed = STANDBY.server(config)
    score(config, tmp_path, "a", labels=labels, predictions=predictions)

    os.kill(killed.pid, signal.SIGKILL)
    document, _ = score(config, tmp_path, "b", labels=labels, predictions=predictions)

    assert document["metrics"]["accuracy"] == 1.0
    replacement = STANDBY.server(config)
    assert replacement is not killed and scored_by(tmp_path, "b")[1] == replacement.pid
    assert killed.process.wait(timeout=60) == -signal.SIGKILL


def test_a_server_that_cannot_start_twice_is_an_infrastructure_error(config, tmp_path, monkeypatch):
    labels, predictions = files(tmp_path)
    shadow = tmp_path / "shadow" / "evaluator"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit(3)\n")  # every server started from now on dies at once
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    STANDBY.keep(config)

    with pytest.raises(InfrastructureError):
        score(config, tmp_path, "a", labels=labels, predictions=predictions)


def test_a_server_whose_worker_lets_go_exits_and_removes_its_log(config, tmp_path):
    STANDBY.keep(config)
    server = STANDBY.server(config)

    server.process.stdin.close()  # what the worker's death does to the pipe

    assert server.process.wait(timeout=60) == 0
    assert not server.log_path.exists()


def test_shutdown_lets_a_scoring_in_progress_end_then_stops_the_server(config, tmp_path):
    labels, _ = files(tmp_path)
    STANDBY.keep(config)
    server = STANDBY.server(config)
    closed = threading.Event()

    def close_then_cancel() -> bool:
        if (tmp_path / "a" / "scoring-result.json").exists() and not closed.is_set():
            STANDBY.close()  # the worker shuts down while this run is scored
            closed.set()
            assert server.process.poll() is None  # still reporting for the child it runs
        return closed.is_set()

    with pytest.raises(RunCancelled):
        score(config, tmp_path, "a", labels=labels, predictions=tmp_path / "p.parquet", csv_source=held_run(tmp_path),
              should_cancel=close_then_cancel)

    assert server.process.wait(timeout=60) == 0 and STANDBY.server(config) is None


def test_a_process_that_keeps_no_standby_starts_no_server_and_leaves_no_log(config, tmp_path):
    labels, predictions = files(tmp_path)

    score(config, tmp_path, "a", labels=labels, predictions=predictions)  # as the CLI does: no keep()

    assert STANDBY.server(config) is None and scored_by(tmp_path, "a")[1] == os.getpid()  # a fresh interpreter
    assert list((Path(config.work_dir) / "scoring").iterdir()) == []
    assert (tmp_path / "a" / "scoring-stderr.txt").exists()  # the child's log, kept beside the run's files


def test_a_forked_child_keeps_the_memory_limit_and_a_crash_is_a_scoring_failure(config, tmp_path):
    labels, _ = files(tmp_path, n=2)
    long_value = "x" * (64 << 20)
    pq.write_table(pa.table({"row_id": pa.array(["id-00000", "id-00001"]),
                             "prediction": pa.array([long_value, "0"])}), tmp_path / "bomb.parquet",
                   use_dictionary=True, compression="zstd")
    limited = config.replace(scoring_memory_bytes=256 << 20)
    STANDBY.keep(limited)
    stats: dict = {}

    with pytest.raises(PredictionsInvalid) as raised:
        score(limited, tmp_path, "a", labels=labels, predictions=tmp_path / "bomb.parquet", stats=stats)

    assert raised.value.code == "predictions_invalid"
    assert stats["peak_rss_bytes"] < 512 << 20
    assert scored_by(tmp_path, "a")[1] == STANDBY.server(limited).pid


def test_with_the_standby_off_each_scoring_starts_its_own_interpreter(config, tmp_path):
    labels, predictions = files(tmp_path)
    off = config.replace(scoring_standby=0)
    STANDBY.keep(off)

    document, _ = score(off, tmp_path, "a", labels=labels, predictions=predictions)

    assert document["metrics"]["accuracy"] == 1.0
    assert STANDBY.server(off) is None and scored_by(tmp_path, "a")[1] == os.getpid()
