"""/health latency of the live API (`evaluator api`, http/gunicorn.conf.py) with and without slow clients.

In the same run: p50/p99 of /health with no other client, then with N sockets
that each send one header line every second and never finish their head
(slowloris), and the ratio. `--sync` measures the previous configuration
(gunicorn `sync` workers) the same way, for the before/after.

    .venv/bin/python bench/slow_clients.py [--slow 50] [--requests 300] [--sync]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from _stack import ROOT, services, stop

from evaluator.storage.seaweed import wait_for_port

TOKEN = "bench-slow-clients-events-token"
SYNC_CONF = """from evaluator.config import Config
_config = Config.from_env()
wsgi_app = "evaluator.api.app:get_app()"
bind = f"{_config.api_host}:{_config.api_port}"
workers = _config.api_workers
worker_class = "sync"
timeout = 60
keepalive = 5
"""


def start_api(config, conf: Path | None) -> subprocess.Popen:
    env = {**os.environ, **config.to_env()}
    command = ([sys.executable, "-m", "gunicorn", "-c", str(conf)] if conf
               else [str(Path(sys.executable).with_name("evaluator")), "api"])
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(config.api_port, 30, proc=proc)
    deadline = time.monotonic() + 30
    while requests.get(f"{config.api_base_url}/health", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("the API did not become healthy")
        time.sleep(0.2)
    return proc


def latencies(url: str, count: int, timeout_s: float) -> tuple[list[float], int]:
    """Return the seconds of each answered /health (new connection each) and how many timed out."""
    answered, timeouts = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            if requests.get(url + "/health", timeout=timeout_s).status_code == 200:
                answered.append(time.perf_counter() - started)
        except requests.RequestException:
            timeouts += 1
    return answered, timeouts


class Slowloris:
    def __init__(self, port: int, count: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def summary(name: str, values: list[float], timeouts: int) -> dict:
    ms = sorted(v * 1000 for v in values)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    print(f"  {name:<28} answered {len(ms):4d}  timed out {timeouts:4d}  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")
    return {"p50": p50, "p99": p99}


def measure(config, conf: Path | None, args: argparse.Namespace, label: str) -> None:
    proc = start_api(config, conf)
    try:
        print(f"{label}: {config.api_workers} workers, /health x{args.requests}, client timeout {args.timeout} s")
        quiet = summary("no other client", *latencies(config.api_base_url, args.requests, args.timeout))
        slow = Slowloris(config.api_port, args.slow)
        try:
            time.sleep(1.5)  # every slow socket accepted and dripping
            loaded = summary(f"{args.slow} slow-header clients", *latencies(config.api_base_url, args.requests,
                                                                            args.timeout))
        finally:
            slow.close()
        print(f"  ratio slow/none: p50 {loaded['p50'] / quiet['p50']:.2f}  p99 {loaded['p99'] / quiet['p99']:.2f}")
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--sync", action="store_true", help="also measure gunicorn `sync` workers (the old conf)")
    args = parser.parse_args()
    # Timeouts longer than the run: the slow clients stay connected for the whole measurement.
    with services(events_token=TOKEN, api_workers=2, api_header_timeout_s=600) as config:
        measure(config, None, args, "http/gunicorn.conf.py (poller-read gthread)")
        if args.sync:
            conf = Path(tempfile.mkdtemp()) / "gunicorn-sync.conf.py"
            conf.write_text(SYNC_CONF)
            args.requests = min(args.requests, 20)  # each may wait out the client timeout
            measure(config, conf, args, "gunicorn sync workers (before)")


if __name__ == "__main__":
    main()
