"""Grant issuance: requests/s of POST /v1/benchmarks/{b}/submissions under gunicorn (2 workers),
against a trivial Falcon JSON endpoint measured in the same run (the ratio is what we report).

    .venv/bin/python bench/grant_issuance.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from _stack import gunicorn, services, stop

from evaluator.storage.db import init_database
from evaluator.storage.models import Benchmark, Dataset
from evaluator.storage.seaweed import free_port
from evaluator.tokens import create_token


def wrk(url: str, body: dict, headers: dict, seconds: int, connections: int) -> float:
    """Return requests/s; wrk's own count of non-2xx responses must be zero."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    with services() as config:
        init_database(config.database_url)
        dataset = Dataset.create(name="bench", version="1", features_key="f", labels_key="l")
        Benchmark.create(id="bench", title="bench", dataset=dataset, task="classification",
                         primary_metric="accuracy", direction="maximize", owner="admin",
                         limits={"max_bundle_bytes": 10_000_000})
        secret, _ = create_token("alice", "participant")
        env = config.to_env()
        api = gunicorn("evaluator.api.app:get_app()", config.api_port, env)
        baseline_port = free_port()
        trivial = gunicorn("trivial_app:app", baseline_port, {**env, "PYTHONPATH": str(Path(__file__).parent)})
        try:
            body = {"name": "model", "version": "1"}
            trivial_rps = wrk(f"http://127.0.0.1:{baseline_port}/ping", body, {}, args.seconds, args.connections)
            grant_rps = wrk(f"http://127.0.0.1:{config.api_port}/v1/benchmarks/bench/submissions", body,
                            {"Authorization": f"Bearer {secret}"}, args.seconds, args.connections)
        finally:
            stop(api)
            stop(trivial)
    print(f"trivial Falcon JSON POST : {trivial_rps:8.0f} req/s")
    print(f"grant issuance (POST)    : {grant_rps:8.0f} req/s")
    print(f"ratio grant / trivial    : {grant_rps / trivial_rps:8.3f}")


if __name__ == "__main__":
    main()
