"""The standby scoring child: started ahead, used for exactly one scoring, replaced in the background.

Through isolated_scoring.score_isolated, the entry the worker, rescoring and `evaluator evaluate` use.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.config import Config
from evaluator.errors import PredictionsInvalid
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
    ids = [f"id-{i:04d}" for i in range(n)]
    y = np.arange(n) % 3
    pq.write_table(pa.table({"row_id": ids, "target": y}), tmp_path / "labels.parquet")
    pq.write_table(pa.table({"row_id": ids, "prediction": y}), tmp_path / "predictions.parquet")
    return tmp_path / "labels.parquet", tmp_path / "predictions.parquet"


def waiting_child(config, *, other_than: int | None = None, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child = STANDBY.waiting(config)
        if child is not None and child.process.pid != other_than:
            return child
        time.sleep(0.05)
    raise AssertionError("no standby scoring child was started")


def score(config, tmp_path, name: str, *, labels, predictions, stats=None):
    return score_isolated(Scoring("classification"), labels, predictions, work_dir=tmp_path / name, config=config,
                          stats=stats)


def test_a_standby_child_scores_exactly_one_run_and_a_new_one_replaces_it(config, tmp_path):
    labels, predictions = files(tmp_path)
    STANDBY.keep(config)
    first = waiting_child(config)

    document, _ = score(config, tmp_path, "a", labels=labels, predictions=predictions)

    assert document["metrics"]["accuracy"] == 1.0
    assert first.process.returncode == 0  # it ran that one scoring and exited
    second = waiting_child(config, other_than=first.process.pid)
    assert second.alive()
    score(config, tmp_path, "b", labels=labels, predictions=predictions)
    assert second.process.returncode == 0
    third = waiting_child(config, other_than=second.process.pid)
    assert len({first.process.pid, second.process.pid, third.process.pid}) == 3


def test_a_waiting_child_holds_no_run_data(config, tmp_path):
    labels, _ = files(tmp_path)
    STANDBY.keep(config)
    child = waiting_child(config)
    time.sleep(1.0)  # let it finish its imports

    opened = [os.readlink(f"/proc/{child.process.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.process.pid}/fd")]
    arguments = open(f"/proc/{child.process.pid}/cmdline", "rb").read().split(b"\0")

    assert not any(str(tmp_path) in path and "worker" not in path for path in opened), opened
    assert b"--standby" in arguments and not any(str(labels).encode() in argument for argument in arguments)


def test_a_process_that_keeps_no_standby_starts_none_and_leaves_no_log(config, tmp_path):
    labels, predictions = files(tmp_path)

    score(config, tmp_path, "a", labels=labels, predictions=predictions)  # as the CLI does: no keep()

    time.sleep(0.5)
    assert STANDBY.waiting(config) is None
    assert list((Path(config.work_dir) / "scoring").iterdir()) == []
    assert (tmp_path / "a" / "scoring-stderr.txt").exists()  # the child's log, kept beside the run's files


def test_a_waiting_child_whose_parent_lets_go_exits_and_removes_its_log(config, tmp_path):
    STANDBY.keep(config)
    child = waiting_child(config)

    child.process.stdin.close()  # what the worker's death does to the pipe

    assert child.process.wait(timeout=60) == 0  # it read end of file: no job, nothing scored
    assert not child.log_path.exists()


def test_a_standby_child_that_died_while_waiting_is_replaced(config, tmp_path):
    labels, predictions = files(tmp_path)
    STANDBY.keep(config)
    child = waiting_child(config)
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()

    document, _ = score(config, tmp_path, "a", labels=labels, predictions=predictions)

    assert document["metrics"]["accuracy"] == 1.0
    assert waiting_child(config, other_than=child.process.pid).alive()


def test_a_standby_child_keeps_the_memory_limit_and_a_crash_is_a_scoring_failure(config, tmp_path):
    labels, _ = files(tmp_path, n=2)
    long_value = "x" * (64 << 20)
    pq.write_table(pa.table({"row_id": pa.array(["id-0000", "id-0001"]),
                             "prediction": pa.array([long_value, "0"])}), tmp_path / "bomb.parquet",
                   use_dictionary=True, compression="zstd")
    limited = config.replace(scoring_memory_bytes=256 << 20)
    STANDBY.keep(limited)
    waiting_child(limited)
    stats: dict = {}

    with pytest.raises(PredictionsInvalid) as raised:
        score(limited, tmp_path, "a", labels=labels, predictions=tmp_path / "bomb.parquet", stats=stats)

    assert raised.value.code == "predictions_invalid"
    assert stats["peak_rss_bytes"] < 512 << 20


def test_with_the_standby_off_each_scoring_starts_its_own_child(config, tmp_path):
    labels, predictions = files(tmp_path)
    off = config.replace(scoring_standby=0)

    document, _ = score(off, tmp_path, "a", labels=labels, predictions=predictions)

    assert document["metrics"]["accuracy"] == 1.0
    time.sleep(0.5)
    assert STANDBY.waiting(off) is None
