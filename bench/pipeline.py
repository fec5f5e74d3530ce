"""Event -> succeeded latency and throughput of the pipeline, warm pool against cold, on real services.

From one run, side by side:
1. warm: N sequential iris-size scikit-learn runs with the warm pool on (each run arrives after a gap
   long enough for the replacement container to import scikit-learn), upload done -> `succeeded` seen
   over HTTP; p50 and p99;
2. cold: the same with EVALUATOR_SANDBOX_POOL_SIZE=0; p50;
3. bare: sequential bare `docker run`s of the same prediction; p50 and the loop's runs per minute;
4. in-process floor: a warm Python process that extracts the bundle, loads it, predicts and scores;
5. throughput: M runs uploaded at once, 2 worker processes with the pool on, against the bare loop;
6. runsc: the warm sequential runs again with EVALUATOR_SANDBOX_RUNTIME=runsc (gVisor), when Docker has it,
   10 s apart (a replacement container imports scikit-learn under gVisor's ptrace platform: 6 s was not
   always enough on this machine, and a run that finds none waits for it).
The warm runs' stage medians (queued, staging, sandbox_ready, predicting, scoring, publishing: the run's
provenance stamps, evaluator.stages) are printed too. The last line is `latency p50=<s> p99=<s>
cold_p50=<s> bare_docker_p50=<s> inprocess_p50=<s> throughput_ratio=<x> runsc_p50=<s>` (runsc_p50=nan
when gVisor is not registered with this Docker).

    .venv/bin/python bench/pipeline.py [--runs 15] [--cold-runs 8] [--throughput-runs 20] [--gap-s 6]
                                       [--runsc-runs 8] [--runsc-gap-s 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from _stack import ROOT, services, stop

from evaluator.bundles import extract_bundle
from evaluator.evaluation import stage_features
from evaluator.stages import StageDurations, stage_durations
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


def staged(bundle: bytes, features: Path) -> tuple[Path, Path]:
    """Extract the bundle and stage the features as the worker does; return (model root, data folder)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    archive = folder / "bundle.tar.gz"
    archive.write_bytes(bundle)
    manifest = extract_bundle(archive, folder / "model")
    data = folder / "data"
    data.mkdir()
    stage_features(features, data / "features.parquet")
    for path in (folder, data, folder / "model", *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return manifest.root, data


def bare_loop(runs: int, bundle: bytes, features: Path) -> list[float]:
    """Seconds of each of `runs` sequential bare `docker run`s doing the same prediction."""
    model, data = staged(bundle, features)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{model}:/model:ro",
                              "-v", f"{data}:/data:ro", "--tmpfs", "/output:size=64m,mode=1777", "evaluator-sklearn"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
        assert out.stdout.startswith(b"0\n"), out.stdout[:100]
    return times


def inprocess_floor(runs: int, bundle: bytes, features: Path, labels: Path) -> list[float]:
    """Seconds per run of a warm process: extract, load, predict, write predictions, score; no container."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sklearn.linear_model  # noqa: F401 - warm: the framework is imported before the clock starts

    from evaluator.scoring.files import score_files

    times = []
    for _ in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="bench-floor-"))
        started = time.perf_counter()
        archive = folder / "bundle.tar.gz"
        archive.write_bytes(bundle)
        manifest = extract_bundle(archive, folder / "model")
        model = joblib.load(manifest.root / "model.joblib")
        frame = pq.read_table(features).to_pandas()
        row_ids = frame.pop("row_id").to_numpy()
        frame = frame.drop(columns=["target"], errors="ignore")
        predictions = folder / "predictions.parquet"
        pq.write_table(pa.table({"row_id": row_ids, "prediction": model.predict(frame.to_numpy())}), predictions)
        score_files("classification", labels, predictions)
        times.append(time.perf_counter() - started)
    return times


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def sequential(platform: Platform, token: str, bundle: bytes, runs: int, gap_s: float,
               stages: list[StageDurations] | None = None) -> list[float]:
    """Event -> succeeded seconds of `runs` runs, one at a time, `gap_s` apart; each run's stages into `stages`."""
    latencies = []
    for _ in range(runs):
        time.sleep(gap_s)
        submission_id, uploaded = platform.submit(token, bundle)
        run, seen = platform.wait(token, submission_id)
        latencies.append(seen - uploaded)
        if stages is not None:
            stages.append(stage_durations(run.get("provenance")))
    return latencies


def stage_medians(stages: list[StageDurations]) -> str:
    """One line: the median seconds of each stage over the runs that measured it."""
    medians = []
    for field in dataclasses.fields(StageDurations):
        values = [getattr(s, field.name) for s in stages if getattr(s, field.name) is not None]
        medians.append(f"{field.name} {quantile(values, 0.5):.3f}")
    return "  ".join(medians)


def runsc_registered() -> bool:
    out = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], stdout=subprocess.PIPE, text=True)
    return '"runsc"' in out.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="sequential warm runs")
    parser.add_argument("--cold-runs", type=int, default=8)
    parser.add_argument("--throughput-runs", type=int, default=20)
    parser.add_argument("--gap-s", type=float, default=6.0, help="pause before each sequential run")
    parser.add_argument("--runsc-runs", type=int, default=8, help="sequential warm runs under gVisor (0: none)")
    parser.add_argument("--runsc-gap-s", type=float, default=10.0,
                        help="pause before each gVisor run (its replacement container imports under ptrace: slower)")
    args = parser.parse_args()
    api_port = free_port()
    with services(api_port=api_port, webhook=Webhook(f"http://127.0.0.1:{api_port}/v1/events/s3", "bench-events"),
                  events_token="bench-events", reconcile_interval_s=0, sandbox_memory="512m",
                  sandbox_pool_size=1, sandbox_pool_images="sklearn") as config:
        from evaluator.storage.db import init_database
        from evaluator.tokens import create_token

        init_database(config.database_url)
        admin, _ = create_token("admin", "admin")
        alice, _ = create_token("alice", "participant")
        features, labels = iris_like(150)
        bundle = sklearn_bundle()
        platform = Platform(config)
        try:
            declared = platform.call("POST", "/v1/datasets", admin, json={"name": "bench", "version": "1"})
            for part, table in (("features", features), ("labels", labels)):
                requests.put(declared["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).raise_for_status()
            while platform.call("GET", f"/v1/datasets/{declared['id']}", admin)["status"] != "ready":
                time.sleep(0.2)
            platform.call("POST", "/v1/benchmarks", admin, json={"id": "bench", "dataset": "bench:1",
                                                                 "task": "classification"})
            warm_stages: list[StageDurations] = []
            warm = sequential(platform, alice, bundle, args.runs, args.gap_s, warm_stages)
            time.sleep(args.gap_s)
            started = time.perf_counter()
            pending = [platform.submit(alice, bundle)[0] for _ in range(args.throughput_runs)]
            for submission_id in pending:
                platform.wait(alice, submission_id, poll_s=0.2)
            pipeline_s = time.perf_counter() - started
        finally:
            platform.close()
        platform = Platform(config.replace(sandbox_pool_size=0))
        try:
            cold_stages: list[StageDurations] = []
            cold = sequential(platform, alice, bundle, args.cold_runs, 1.0, cold_stages)
        finally:
            platform.close()
        runsc: list[float] = []
        runsc_stages: list[StageDurations] = []
        if args.runsc_runs and runsc_registered():
            platform = Platform(config.replace(sandbox_runtime="runsc"))
            try:
                runsc = sequential(platform, alice, bundle, args.runsc_runs, args.runsc_gap_s, runsc_stages)
            finally:
                platform.close()
        features_path = Path(config.work_dir).parent / "features.parquet"
        labels_path = Path(config.work_dir).parent / "labels.parquet"
        features_path.write_bytes(parquet_bytes(features))
        labels_path.write_bytes(parquet_bytes(labels))
        bare = bare_loop(args.throughput_runs, bundle, features_path)
        floor = inprocess_floor(max(args.runs, 5), bundle, features_path, labels_path)

    p50, p99 = quantile(warm, 0.5), quantile(warm, 0.99)
    cold_p50, bare_p50, floor_p50 = quantile(cold, 0.5), quantile(bare, 0.5), quantile(floor, 0.5)
    pipeline_rpm = args.throughput_runs / pipeline_s * 60
    bare_rpm = len(bare) / sum(bare) * 60
    print(f"event -> succeeded, {len(warm)} sequential runs {args.gap_s:g}s apart:")
    print(f"  warm pool       p50 {p50:.3f} s   p99 {p99:.3f} s")
    print(f"  cold (pool off) p50 {cold_p50:.3f} s   ({len(cold)} runs)")
    print(f"  bare docker run p50 {bare_p50:.3f} s   ({len(bare)} runs)")
    print(f"  in-process      p50 {floor_p50:.3f} s   ({len(floor)} runs)")
    print(f"  ratios: warm/bare {p50 / bare_p50:.3f}  warm p99/bare {p99 / bare_p50:.3f}  "
          f"warm/in-process {p50 / floor_p50:.2f}  cold/bare {cold_p50 / bare_p50:.2f}")
    runsc_p50 = quantile(runsc, 0.5)
    if runsc:
        print(f"  runsc warm pool p50 {runsc_p50:.3f} s   ({len(runsc)} runs; "
              f"runsc/bare(runc) {runsc_p50 / bare_p50:.3f})")
    else:
        print("  runsc warm p50: not measured (gVisor is not registered with this Docker daemon)")
    print("stage medians (s), from the runs' provenance stamps:")
    print(f"  warm : {stage_medians(warm_stages)}")
    print(f"  cold : {stage_medians(cold_stages)}")
    if runsc_stages:
        print(f"  runsc: {stage_medians(runsc_stages)}")
    print(f"throughput over {args.throughput_runs} runs at once:")
    print(f"  pipeline, 2 worker processes, warm pool : {pipeline_rpm:7.1f} runs/min ({pipeline_s:.1f} s)")
    print(f"  bare docker run, sequential             : {bare_rpm:7.1f} runs/min ({sum(bare):.1f} s)")
    print(f"latency p50={p50:.3f} p99={p99:.3f} cold_p50={cold_p50:.3f} bare_docker_p50={bare_p50:.3f} "
          f"inprocess_p50={floor_p50:.4f} throughput_ratio={pipeline_rpm / bare_rpm:.2f} runsc_p50={runsc_p50:.3f}")


if __name__ == "__main__":
    main()
