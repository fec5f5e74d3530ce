"""Platform overhead and throughput of the event-driven pipeline, on this machine's real services.

1. Overhead: for N sequential small runs, (upload done -> run `succeeded` seen over HTTP) minus the
   sandbox's own run time; median and p95.
2. Throughput: M small runs uploaded at once, 2 worker processes, runs per minute, against a sequential
   loop of bare `docker run` of the same image doing the same predictions, measured in the same run.

    .venv/bin/python bench/pipeline.py [--overhead-runs 30] [--throughput-runs 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from _stack import ROOT, services, stop

from evaluator.bundles import extract_bundle
from evaluator.evaluation import stage_features
from evaluator.storage.seaweed import Webhook, free_port, wait_for_port
from tests.e2e.bundles import sklearn_bundle
from tests.integration.helpers import iris_like, parquet_bytes

BIN = Path(sys.executable).parent


class Platform:
    def __init__(self, config) -> None:
        self.config, self.url = config, config.api_base_url
        env = {**os.environ, **config.to_env(), "dramatiq_queue_prefetch": "1"}
        log = open(Path(config.work_dir).parent / "platform.log", "ab")
        self.api = subprocess.Popen([str(BIN / "evaluator"), "api"], cwd=ROOT, env=env, stdout=log, stderr=log,
                                    start_new_session=True)
        self.worker = subprocess.Popen([str(BIN / "evaluator"), "worker", "--processes", "2", "--threads", "1"],
                                       cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        wait_for_port(config.api_port, 60, proc=self.api)
        time.sleep(2)

    def call(self, method, path, token, **kwargs):
        response = requests.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"},
                                    timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def submit(self, token: str, bundle: bytes) -> tuple[str, float]:
        grant = self.call("POST", "/v1/benchmarks/bench/submissions", token,
                          json={"name": "m", "method": "put", "size": len(bundle)})
        assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
        return grant["submission"]["id"], time.perf_counter()

    def wait(self, token: str, submission_id: str, poll_s: float = 0.02) -> tuple[dict, float]:
        run_id = None
        while True:
            if run_id is None:
                runs = self.call("GET", f"/v1/submissions/{submission_id}", token)["runs"]
                run_id = runs[0]["id"] if runs else None
            else:
                run = self.call("GET", f"/v1/runs/{run_id}", token)
                if run["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                    if run["status"] != "succeeded":
                        raise SystemExit(f"run failed: {run['failure']}")
                    return run, time.perf_counter()
            time.sleep(poll_s)

    def close(self) -> None:
        stop(self.worker)
        stop(self.api)


def bare_loop(runs: int, bundle: bytes, features: Path) -> float:
    """Seconds for `runs` sequential bare `docker run`s doing the same prediction."""
    folder = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    archive = folder / "bundle.tar.gz"
    archive.write_bytes(bundle)
    manifest = extract_bundle(archive, folder / "model")
    data = folder / "data"
    data.mkdir()
    stage_features(features, data / "features.parquet")
    for path in (folder, data, folder / "model", *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    started = time.perf_counter()
    for _ in range(runs):
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{manifest.root}:/model:ro",
                              "-v", f"{data}:/data:ro", "--tmpfs", "/output:size=64m,mode=1777", "evaluator-sklearn"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert out.stdout.startswith(b"0\n"), out.stdout[:100]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--overhead-runs", type=int, default=30)
    parser.add_argument("--throughput-runs", type=int, default=100)
    args = parser.parse_args()
    api_port = free_port()
    with services(api_port=api_port, webhook=Webhook(f"http://127.0.0.1:{api_port}/v1/events/s3", "bench-events"),
                  events_token="bench-events", reconcile_interval_s=0, sandbox_memory="512m") as config:
        from evaluator.storage.db import init_database
        from evaluator.tokens import create_token

        init_database(config.database_url)
        admin, _ = create_token("admin", "admin")
        alice, _ = create_token("alice", "participant")
        platform = Platform(config)
        try:
            features, labels = iris_like(150)
            declared = platform.call("POST", "/v1/datasets", admin, json={"name": "bench", "version": "1"})
            for part, table in (("features", features), ("labels", labels)):
                requests.put(declared["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).raise_for_status()
            while platform.call("GET", f"/v1/datasets/{declared['id']}", admin)["status"] != "ready":
                time.sleep(0.2)
            platform.call("POST", "/v1/benchmarks", admin, json={"id": "bench", "dataset": "bench:1",
                                                                 "task": "classification"})
            bundle = sklearn_bundle()
            overheads, sandbox_s = [], []
            for _ in range(args.overhead_runs):
                submission_id, uploaded = platform.submit(alice, bundle)
                run, seen = platform.wait(alice, submission_id)
                running = run["provenance"]["durations_s"]["running"]
                overheads.append(seen - uploaded - running)
                sandbox_s.append(running)
            started = time.perf_counter()
            pending = [platform.submit(alice, bundle)[0] for _ in range(args.throughput_runs)]
            for submission_id in pending:
                platform.wait(alice, submission_id, poll_s=0.2)
            pipeline_s = time.perf_counter() - started
        finally:
            platform.close()
        features_path = Path(config.work_dir).parent / "features.parquet"
        features_path.write_bytes(parquet_bytes(features))
        bare_s = bare_loop(args.throughput_runs, bundle, features_path)

    overheads.sort()
    p95 = overheads[min(len(overheads) - 1, int(round(0.95 * (len(overheads) - 1))))]
    print(f"overhead over {len(overheads)} sequential runs (upload done -> succeeded, minus sandbox run time):")
    print(f"  median {statistics.median(overheads):.3f} s   p95 {p95:.3f} s   "
          f"(sandbox run time median {statistics.median(sandbox_s):.3f} s)")
    pipeline_rpm = args.throughput_runs / pipeline_s * 60
    bare_rpm = args.throughput_runs / bare_s * 60
    print(f"throughput over {args.throughput_runs} runs:")
    print(f"  pipeline, 2 worker processes : {pipeline_rpm:7.1f} runs/min ({pipeline_s:.1f} s)")
    print(f"  bare docker run, sequential  : {bare_rpm:7.1f} runs/min ({bare_s:.1f} s)")
    print(f"  ratio pipeline / bare        : {pipeline_rpm / bare_rpm:7.2f}")


if __name__ == "__main__":
    main()
