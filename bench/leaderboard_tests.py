"""Cost of the leaderboard's paired tests and Ladder on a board of 10,000 runs with stored predictions.

10,000 succeeded runs (1,000 participants x 10) over 1,000 labelled rows, each with its predictions.parquet
in SeaweedFS, through falcon.testing on a real PostgreSQL: the JSON board without either option, with
settings.significance_level (at most 20 adjacent pairs tested), and with settings.ladder (each participant's
runs that beat their current score are read). "cold" is the first GET with empty process caches (rows,
comparisons and the kept ranking of evaluator.board_cache), "warm" the median of the next ones (a kept ranking).

    .venv/bin/python bench/leaderboard_tests.py [--runs 10000] [--participants 1000] [--rows 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import statistics
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _stack import services

from evaluator.storage.db import init_database
from evaluator.storage.models import Benchmark, Dataset, Run, Submission


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def seed(args, config, blobs, dataset: Dataset, benchmark_id: str, settings: dict) -> None:
    Benchmark.create(id=benchmark_id, title=benchmark_id, dataset=dataset, task="classification",
                     primary_metric="accuracy", direction="maximize", owner="admin", settings=settings)
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, args.rows)
    ids = [f"r{i:06d}" for i in range(args.rows)]
    start = datetime.datetime(2026, 12, 1)
    submissions, runs, uploads = [], [], []
    for i in range(args.runs):
        owner, sid, rid = f"p{i % args.participants:05d}", uuid.uuid4(), uuid.uuid4()
        predicted = np.where(rng.random(args.rows) < rng.uniform(0.5, 0.95), truth, 1 - truth)
        accuracy = float(np.mean(predicted == truth))
        prefix = f"results/{benchmark_id}/{rid}/"
        submissions.append({"id": sid, "benchmark": benchmark_id, "owner": owner, "name": "m", "version": str(i),
                            "bucket": "b", "object_key": f"bundles/{benchmark_id}/{owner}/m/{i}/{sid}.tar.gz",
                            "status": "uploaded", "created_at": start + datetime.timedelta(seconds=i)})
        runs.append({"id": rid, "submission": sid, "benchmark": benchmark_id, "owner": owner, "status": "succeeded",
                     "finished_at": start + datetime.timedelta(seconds=i, milliseconds=500), "results_prefix": prefix,
                     "metrics": {"metrics": {"accuracy": accuracy}}})
        uploads.append((prefix + "predictions.parquet", parquet(pa.table({"row_id": ids, "prediction": predicted}))))
    for chunk in range(0, args.runs, 1000):
        Submission.insert_many(submissions[chunk:chunk + 1000]).execute()
        Run.insert_many(runs[chunk:chunk + 1000]).execute()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: blobs.put_bytes(config.results_bucket, item[0], item[1]), uploads))


def main() -> None:
    import falcon.testing

    from evaluator import board_cache, row_store
    from evaluator.api.app import create_app
    from evaluator.intake import Queues
    from evaluator.storage.blobs import BlobStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--participants", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with services() as config:
        database = init_database(config.database_url)
        blobs = BlobStore.from_config(config)
        blobs.ensure_buckets(config.datasets_bucket, config.results_bucket)
        rng = np.random.default_rng(7)
        labels = pa.table({"row_id": [f"r{i:06d}" for i in range(args.rows)], "target": rng.integers(0, 2, args.rows)})
        blobs.put_bytes(config.datasets_bucket, "datasets/bench/1/labels.parquet", parquet(labels))
        blobs.put_bytes(config.datasets_bucket, "datasets/bench/1/features.parquet",
                        parquet(labels.select(["row_id"])))
        dataset = Dataset.create(name="bench", version="1", features_key="datasets/bench/1/features.parquet",
                                 labels_key="datasets/bench/1/labels.parquet", status="ready", row_count=args.rows,
                                 labels_sha256=uuid.uuid4().hex)
        boards = {"plain": {}, "significance_level 0.05": {"significance_level": 0.05}, "ladder": {"ladder": True}}
        began = time.perf_counter()
        for index, settings in enumerate(boards.values()):
            seed(args, config, blobs, dataset, f"board-{index}", settings)
        print(f"seeded {len(boards)} x {args.runs} runs with predictions in {time.perf_counter() - began:.0f} s")
        database.close()
        ignore = lambda run_id: None  # noqa: E731 (no broker: these requests queue nothing)
        app = create_app(config, database=database, blobs=blobs,
                         queues=Queues(evaluate_run=ignore, register_dataset=ignore, rescore_run=ignore),
                         health_checks={})
        client = falcon.testing.TestClient(app)
        print(f"{args.runs} runs, {args.participants} participants, {args.rows} rows; JSON leaderboard (anonymous)")
        for index, label in enumerate(boards):
            store = row_store.shared(blobs, config)
            board_cache.clear()  # cold: no kept ranking either
            began = time.perf_counter()
            response = client.simulate_get(f"/v1/benchmarks/board-{index}/leaderboard")
            cold = (time.perf_counter() - began) * 1000
            assert response.status_code == 200, response.text[:300]
            samples = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                client.simulate_get(f"/v1/benchmarks/board-{index}/leaderboard")
                samples.append((time.perf_counter() - began) * 1000)
            entries = response.json["entries"]
            ties = sum(1 for e in entries if e["tied_with_next"])
            print(f"{label:>24}: cold {cold:>8.0f} ms, warm {statistics.median(samples):>7.0f} ms; "
                  f"runs read {len(store._rows):>5}, ties {ties}")
        row_store._SHARED.clear()  # a restarted process: empty caches, the ladder's steps in PostgreSQL
        board_cache.clear()
        began = time.perf_counter()
        client.simulate_get(f"/v1/benchmarks/board-{len(boards) - 1}/leaderboard")
        print(f"{'ladder after a restart':>24}: cold {(time.perf_counter() - began) * 1000:>8.0f} ms; runs read "
              f"{len(row_store.shared(blobs, config)._rows):>5}")


if __name__ == "__main__":
    main()
