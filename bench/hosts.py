"""Throughput with 1, 2 and 3 worker hosts, each a network namespace of its own (tests/e2e/hosts.py).

The shared PostgreSQL, Redis and SeaweedFS are private servers on the host side of
a bridge; each host runs one worker process with one thread (so a host is one run
at a time) and its own run folder and warm pool. For each host count, in the same
run: a warm-up run per host, then M iris-size scikit-learn runs uploaded at once;
throughput is M over the time from the first upload to the last `succeeded`.
Ratios are against 1 host. Every host shares this machine's cores and its one
Docker Engine, so the ratio says what the queueing and leasing let through, not
what separate machines would add. Needs root (ip netns).

    .venv/bin/python bench/hosts.py [--runs 12] [--hosts 1,2,3]

The last line is `hosts runs_per_min_1=<x> runs_per_min_2=<x> runs_per_min_3=<x> ratio_2=<x> ratio_3=<x>`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests
from _stack import ROOT  # noqa: F401 - puts the checkout on sys.path

from evaluator.storage.models import Run
from tests.e2e import netns
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.hosts import HostStack, SharedServices

FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def upload(stack: HostStack, token: str, bundle: bytes) -> str:
    grant = stack.call("POST", "/v1/benchmarks/bench/submissions", token,
                       json={"name": "m", "method": "put", "size": len(bundle)}).json()
    assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
    return grant["submission"]["id"]


def wait_all(count: int, timeout_s: float = 900) -> None:
    """Wait until `count` runs exist and all are final; every one must have succeeded."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [status for (status,) in Run.select(Run.status).tuples()]
        if len(statuses) == count and all(s in FINAL for s in statuses):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"runs did not finish: {statuses}")
        time.sleep(0.05)
    failed = Run.select().where(Run.status != "succeeded").count()
    if failed:
        raise SystemExit(f"{failed} run(s) did not succeed")


def measure(services: SharedServices, folder: Path, hosts: int, runs: int) -> dict:
    stack = services.stack(folder / f"hosts-{hosts}", log_level="WARNING", reconcile_interval_s=0)
    try:
        stack.start_api()
        for index in range(1, hosts + 1):
            stack.start_host(index)
        _, alice, _ = stack.competition({"id": "bench", "task": "classification",
                                         "limits": {"timeout_s": 120, "memory": "512m"}})
        bundle = sklearn_bundle()
        for _ in range(hosts):  # warm-up: every host has imported its code and filled its pool once
            upload(stack, alice, bundle)
        wait_all(hosts)
        started = time.perf_counter()
        for _ in range(runs):
            upload(stack, alice, bundle)
        wait_all(hosts + runs)
        elapsed = time.perf_counter() - started
        measured = Run.select(Run.worker_host).order_by(Run.created_at).offset(hosts)
        per_host = [sum(1 for r in measured if stack.host_of(r.worker_host) == i) for i in range(1, hosts + 1)]
        return {"hosts": hosts, "seconds": elapsed, "runs_per_min": runs / elapsed * 60, "per_host": per_host}
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--hosts", default="1,2,3")
    args = parser.parse_args()
    why = netns.available()
    if why:
        raise SystemExit(f"cannot make fake hosts here: {why}")
    counts = [int(part) for part in args.hosts.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="evaluator-bench-hosts-"))
    services = SharedServices(folder / "services", hosts=max(counts)).start()
    try:
        results = [measure(services, folder, hosts, args.runs) for hosts in counts]
    finally:
        services.stop()
        shutil.rmtree(folder, ignore_errors=True)
    base = results[0]["runs_per_min"]
    print(f"{'hosts':>5} {'runs':>5} {'seconds':>8} {'runs/min':>9} {'ratio':>6}  runs per host")
    for result in results:
        print(f"{result['hosts']:>5} {args.runs:>5} {result['seconds']:>8.1f} {result['runs_per_min']:>9.1f} "
              f"{result['runs_per_min'] / base:>6.2f}  {result['per_host']}")
    spread = statistics.pstdev(results[-1]["per_host"]) if len(results[-1]["per_host"]) > 1 else 0.0
    print("hosts " + " ".join(f"runs_per_min_{r['hosts']}={r['runs_per_min']:.1f}" for r in results) + " "
          + " ".join(f"ratio_{r['hosts']}={r['runs_per_min'] / base:.2f}" for r in results[1:])
          + f" per_host_stdev_{results[-1]['hosts']}={spread:.2f}")


if __name__ == "__main__":
    main()
