"""Run queues by capability: which queue a benchmark's limits pick, and which queues a host's worker consumes."""

from __future__ import annotations

import pytest

from evaluator.capabilities import (
    CPU,
    GPU,
    RUNSC,
    detect_capabilities,
    host_capabilities,
    parse_capabilities,
    queue_for,
    served_queues,
)
from evaluator.config import Config
from evaluator.errors import ConfigInvalid
from evaluator.settings import BenchmarkLimits


@pytest.mark.parametrize("raw, queue", [
    ({}, CPU),
    ({"timeout_s": 60, "memory": "512m", "gpus": 0}, CPU),
    ({"runtime": "runc"}, CPU),
    ({"runtime": "runsc"}, RUNSC),
    ({"gpus": 1}, GPU),
    ({"gpus": 2, "runtime": "runsc"}, GPU),  # a GPU is the scarcer thing: only GPU hosts can serve it
])
def test_a_benchmarks_limits_pick_its_runs_queue(raw, queue):
    assert queue_for(BenchmarkLimits.from_json(raw)) == queue


def test_configured_capabilities_are_a_comma_list_of_known_names():
    assert parse_capabilities(" cpu, RUNSC ,") == {CPU, RUNSC}
    assert parse_capabilities("gpu") == {GPU}
    for bad in ("tpu", "cpu,tpu", " , "):
        with pytest.raises(ConfigInvalid, match="EVALUATOR_WORKER_CAPABILITIES"):
            parse_capabilities(bad)


def test_detection_reads_the_runtimes_the_docker_daemon_lists():
    runc = {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}}
    assert detect_capabilities({"Runtimes": runc}) == {CPU}
    assert detect_capabilities({"Runtimes": {**runc, "runsc": {"path": "/usr/bin/runsc"}}}) == {CPU, RUNSC}
    assert detect_capabilities({"Runtimes": {**runc, "nvidia": {"path": "nvidia-container-runtime"}}}) == {CPU, GPU}
    assert detect_capabilities({}) == {CPU}


def test_configured_capabilities_win_and_an_unreachable_docker_leaves_cpu_only():
    def unreachable():
        raise ConnectionError("no docker socket")

    assert host_capabilities(Config(worker_capabilities="gpu"), unreachable) == ({GPU}, "configured")
    assert host_capabilities(Config(), unreachable) == ({CPU}, "detected")
    assert host_capabilities(Config(), lambda: {"Runtimes": {"runsc": {}}}) == ({CPU, RUNSC}, "detected")
    assert host_capabilities(Config(sandbox_backend="kubernetes"), unreachable) == ({CPU}, "detected")


def test_a_worker_consumes_every_other_queue_and_only_the_run_queues_its_host_serves():
    declared = {"cpu", "runsc", "gpu", "datasets", "maintenance", "webhooks"}
    assert served_queues(declared, frozenset({CPU})) == {"cpu", "datasets", "maintenance", "webhooks"}
    assert served_queues(declared, frozenset({GPU})) == {"gpu", "datasets", "maintenance", "webhooks"}
    assert served_queues({"cpu", "maintenance"}, frozenset({CPU, RUNSC})) == {"cpu", "maintenance"}  # --queues
