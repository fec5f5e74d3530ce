"""Server-side render time of the benchmark page for a leaderboard of 10,000 runs, against the JSON
leaderboard endpoint in the same run (the ratio is what we report), through falcon.testing on a real
PostgreSQL. Both show one page of the board (100 rows) with the whole board's ranks and counts.

"warm" is the usual read: the rows kept by evaluator.board_cache while the benchmark's succeeded
runs are unchanged. "cold" empties that cache before each request (the first read after a run
finished): PostgreSQL ranks the board (evaluator.board_window: each entrant's best run, the ranks,
the counts) and returns the rows shown. The load average is printed before and after: on a shared
machine compare ratios of one run, not milliseconds of two. "CPU ms" adds this process's CPU time
and its PostgreSQL backend's (/proc, a local server): other processes' load changes it far less.
After seeding, VACUUM ANALYZE does what autovacuum does on a server whose runs came in over time.
Each run's metrics document has the scorer's size for 10 classes (about 2 KB of JSON, some 1.3 KB compressed
in the row), and its board_values as runs.finish writes them.

    .venv/bin/python bench/pages.py [--runs 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import time
import uuid
from pathlib import Path

from _stack import services

from evaluator import board_cache
from evaluator.storage import board_values
from evaluator.storage.db import init_database
from evaluator.storage.models import Benchmark, Dataset, Run, Submission


def document(rng: random.Random, accuracy: float, classes: int = 10) -> dict:
    """A metrics document the size the scorer writes for 10 classes: per-class table, confusion matrix, CI."""
    per_class = {f"class_{c}": {"precision": rng.random(), "recall": rng.random(), "f1": rng.random(),
                                "support": rng.randrange(900, 1100)} for c in range(classes)}
    return {"metrics": {"accuracy": accuracy, "f1_macro": accuracy - 0.01, "precision_macro": rng.random(),
                        "recall_macro": rng.random(), "log_loss": rng.random()},
            "per_class": per_class,
            "confusion_matrix": {"labels": list(per_class),
                                 "matrix": [[rng.randrange(100) for _ in range(classes)] for _ in range(classes)]},
            "primary_metric": {"name": "accuracy", "value": accuracy, "direction": "maximize",
                               "ci": {"low": accuracy - 0.03, "high": accuracy + 0.02, "level": 0.95, "rounds": 1000,
                                      "seed": 0, "method": "rows"}},
            "rows": 10_000, "scored_at": "2026-12-01T00:00:00Z"}


def seed(runs: int, participants: int, benchmark_id: str, dataset: Dataset) -> None:
    """A benchmark whose `runs` succeeded runs belong to `participants` participants (bulk inserts)."""
    Benchmark.create(id=benchmark_id, title=benchmark_id, dataset=dataset, task="classification",
                     primary_metric="accuracy", direction="maximize", owner="admin",
                     settings={"tie_breakers": ["f1_macro"]})
    rng = random.Random(7)
    start = datetime.datetime(2026, 12, 1)
    submissions, rows = [], []
    for i in range(runs):
        owner, sid = f"p{i % participants:05d}", uuid.uuid4()
        accuracy = round(rng.uniform(0.5, 0.99), 6)
        submissions.append({"id": sid, "benchmark": benchmark_id, "owner": owner, "name": "m", "version": str(i),
                            "bucket": "b", "object_key": f"bundles/{benchmark_id}/{owner}/m/{i}/{sid}.tar.gz",
                            "status": "uploaded", "created_at": start + datetime.timedelta(seconds=i)})
        rows.append({"id": uuid.uuid4(), "submission": sid, "benchmark": benchmark_id, "owner": owner,
                     "status": "succeeded", "finished_at": start + datetime.timedelta(seconds=i, milliseconds=500),
                     "metrics": document(rng, accuracy)})
        rows[-1]["board_values"] = board_values.of(rows[-1]["metrics"], None)  # as runs.finish writes it
    for chunk in range(0, runs, 1000):
        Submission.insert_many(submissions[chunk:chunk + 1000]).execute()
        Run.insert_many(rows[chunk:chunk + 1000]).execute()


def backend_seconds(database) -> float | None:
    """CPU seconds the PostgreSQL backend of this connection has used (None unless it runs on this machine)."""
    pid = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def timed(client, database, path: str, repeat: int, cold: bool = False) -> tuple[float, float | None, int]:
    """Median milliseconds of GET path (after one warm-up), mean CPU milliseconds of this process and its
    PostgreSQL backend per GET (less sensitive to other processes' load), and the response's size; `cold`:
    nothing kept."""
    response = client.simulate_get(path)
    assert response.status_code == 200, response.text[:300]
    samples = []
    backend_before, process_before = backend_seconds(database), time.process_time()
    for _ in range(repeat):
        if cold:
            board_cache.clear()
        began = time.perf_counter()
        response = client.simulate_get(path)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200
    process, backend_after = time.process_time() - process_before, backend_seconds(database)
    cpu = None if backend_before is None or backend_after is None else \
        (process + backend_after - backend_before) * 1000 / repeat
    return statistics.median(samples), cpu, len(response.content)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    import falcon.testing

    from evaluator.api.app import create_app
    from evaluator.intake import Queues
    from evaluator.storage.blobs import BlobStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with services() as config:
        database = init_database(config.database_url)
        dataset = Dataset.create(name="bench", version="1", features_key="f", labels_key="l", status="ready",
                                 row_count=10_000)
        shapes = {"one run each": args.runs, "10 runs each": max(1, args.runs // 10)}
        for index, participants in enumerate(shapes.values()):
            seed(args.runs, participants, f"board-{index}", dataset)
        database.execute_sql("VACUUM ANALYZE")
        database.close()
        ignore = lambda run_id: None  # noqa: E731 (no broker: these requests queue nothing)
        app = create_app(config, database=database, blobs=BlobStore.from_config(config),
                         queues=Queues(evaluate_run=ignore, register_dataset=ignore, rescore_run=ignore),
                         health_checks={})
        client = falcon.testing.TestClient(app)
        print(f"{args.runs} succeeded runs per benchmark, median of {args.repeat} GETs (falcon.testing, PostgreSQL); "
              f"load average {load()}")
        print(f"{'participants':>26} {'':>5} {'JSON leaderboard':>18} {'page /benchmarks/{id}':>22} {'ratio':>7}"
              f"   {'CPU ms: JSON':>12} {'page':>6} {'ratio':>6}")
        for index, (label, participants) in enumerate(shapes.items()):
            for kind in ("warm", "cold"):
                json_ms, json_cpu, json_bytes = timed(client, database, f"/v1/benchmarks/board-{index}/leaderboard",
                                                      args.repeat, cold=kind == "cold")
                page_ms, page_cpu, page_bytes = timed(client, database, f"/benchmarks/board-{index}", args.repeat,
                                                      cold=kind == "cold")
                cpu = (f"{json_cpu:>12.1f} {page_cpu:>6.1f} {page_cpu / json_cpu:>5.2f}x"
                       if json_cpu is not None and page_cpu is not None and json_cpu else f"{'-':>12}")
                print(f"{participants:>12} ({label:>12}) {kind:>5} {json_ms:>12.1f} ms {page_ms:>17.1f} ms "
                      f"{page_ms / json_ms:>6.2f}x   {cpu}   ({json_bytes // 1024} KiB JSON, "
                      f"{page_bytes // 1024} KiB HTML)")
        print(f"load average {load()}")


if __name__ == "__main__":
    main()
