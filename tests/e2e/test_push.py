"""Push, not poll: signed webhooks, the run's event stream, queue position and ETA, on the live stack.

The receiver is a tiny http.server on loopback (the stack allows private targets,
EVALUATOR_WEBHOOK_ALLOW_PRIVATE=1, as a test must); it checks each signature the
way the README tells receivers to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from evaluator.tokens import create_token
from tests.e2e.bundles import sklearn_bundle, sleepy_bundle
from tests.e2e.conftest import BIN, ROOT, emptied, shared_stack_of

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture(scope="module")
def module_push_stack(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory):
    """A stack whose webhooks may target loopback, retry fast, and whose streams are short and few."""
    yield from shared_stack_of(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory,
                               webhook_allow_private=1, webhook_min_backoff_s=0.5, webhook_max_backoff_s=2.0,
                               sse_max_streams=1, sse_max_duration_s=4.0, sse_heartbeat_s=1.0, sse_poll_s=0.2)


@pytest.fixture
def push_stack(module_push_stack, migrated_database):
    """The module's push stack as a fresh one starts; put back after a test that kills or restarts a process."""
    with emptied(module_push_stack, migrated_database) as platform:
        yield platform


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What the README tells receivers to do (kept independent of evaluator.webhooks on purpose)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - timestamp) <= tolerance_s and hmac.compare_digest(expected, fields["v1"])


class Receiver:
    """Records every POST per path; answers 500 to the first `fail_first[path]` of them, 200 after."""

    def __init__(self, fail_first: dict[str, int]) -> None:
        self.received: dict[str, list[tuple[dict, bytes]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    seen = receiver.received.setdefault(self.path, [])
                    seen.append((dict(self.headers), body))
                    status = 500 if len(seen) <= fail_first.get(self.path, 0) else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status == 500 else b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, path: str) -> list[tuple[dict, bytes]]:
        with self.lock:
            return list(self.received.get(path, []))


@pytest.fixture
def receiver():
    server = Receiver({"/manager": 1})
    yield server
    server.server.shutdown()


def submit(stack, token: str, bundle: bytes, name: str) -> str:
    """Upload a bundle by plain HTTP; returns its run's id once the store's notification made one."""
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", token,
                       json={"name": name, "method": "put", "size": len(bundle)}).json()
    assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
    body = stack.wait_for(f"/v1/submissions/{grant['submission']['id']}", token, lambda s: s["runs"], 60)
    return body["runs"][0]["id"]


def events(stack, token: str, run_id: str, last_event_id: str | None = None, timeout_s: float = 180):
    """Follow a run's stream to its end, reconnecting with Last-Event-ID; returns (events, connections)."""
    seen, connections, deadline = [], 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        with requests.get(f"{stack.url}/v1/runs/{run_id}/events", headers=headers, stream=True,
                          timeout=30) as response:
            if response.status_code == 503:  # the one stream slot is still taken by a closed client
                assert response.headers["Retry-After"]
                time.sleep(0.5)
                continue
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            connections += 1
            event = {}
            for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                if not line:
                    if "data" in event:
                        seen.append(event)
                        last_event_id = event.get("id", last_event_id)
                        if event["event"] == "finished":
                            return seen, connections
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = json.loads(value) if name == "data" else value
    raise AssertionError(f"run {run_id}'s stream did not end in {timeout_s}s: {seen}")


def deliveries(stack, token: str, webhook_id: str, done) -> list[dict]:
    return stack.wait_for(f"/v1/webhooks/{webhook_id}/deliveries", token, lambda page: done(page["items"]), 120)[
        "items"]


def test_webhooks_are_signed_retried_after_a_500_and_sent_once_per_terminal_state(
        push_stack, images_built, receiver):
    images_built("sklearn")
    stack = push_stack
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    # Targets that are not http(s), and benchmark-wide subscriptions by a participant, are refused
    refused = stack.call("POST", "/v1/webhooks", alice, json={"url": "file:///etc/passwd"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "url"
    forbidden = stack.call("POST", "/v1/webhooks", alice,
                           json={"url": receiver.url + "/x", "scope": "benchmark", "benchmark": "iris"})
    assert forbidden.status_code == 403
    # Given the benchmark's manager and alice each subscribe a loopback receiver
    manager = stack.call("POST", "/v1/webhooks", admin,
                         json={"url": receiver.url + "/manager", "scope": "benchmark", "benchmark": "iris"})
    own = stack.call("POST", "/v1/webhooks", alice, json={"url": receiver.url + "/alice", "benchmark": "iris"})
    assert manager.status_code == own.status_code == 201, (manager.text, own.text)
    manager, own = manager.json(), own.json()
    assert manager["secret"].startswith("whsec_") and "secret" not in stack.call(
        "GET", f"/v1/webhooks/{own['id']}", alice).json()
    assert [w["id"] for w in stack.call("GET", "/v1/webhooks", alice).json()["items"]] == [own["id"]]
    assert stack.call("GET", f"/v1/webhooks/{manager['id']}/deliveries", alice).status_code == 404

    # When alice's run succeeds
    run_id = submit(stack, alice, sklearn_bundle(), "first")
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded", run

    # Then the manager's receiver, which answered 500 first, got it again with the same delivery id
    log = deliveries(stack, admin, manager["id"], lambda items: items and items[0]["status"] == "delivered")
    assert len(log) == 1 and log[0]["run_id"] == run_id
    assert [(a["number"], a["status_code"]) for a in log[0]["attempts"]] == [(1, 500), (2, 200)]
    assert log[0]["attempts"][0]["error"] == "answered 500" and log[0]["attempts"][0]["response"] == "no"
    posts = receiver.posts("/manager")
    assert len(posts) == 2
    assert {headers["Evaluator-Delivery"] for headers, _ in posts} == {log[0]["id"]}
    for headers, body in posts:
        assert headers["Evaluator-Event"] == "run.finished"
        assert verify(manager["secret"], body, headers["Evaluator-Signature"])
        assert not verify(own["secret"], body, headers["Evaluator-Signature"])
    payload = json.loads(posts[0][1])
    assert payload["id"] == log[0]["id"] and payload["event"] == "run.finished"
    exact = stack.call("GET", f"/v1/runs/{run_id}", admin).json()
    assert payload["data"]["run"]["status"] == "succeeded"
    assert payload["data"]["run"]["metrics"] == exact["metrics"]  # managers: exact values

    # and alice's receiver got it once, with the scores as she sees them (rounded)
    log = deliveries(stack, alice, own["id"], lambda items: items and items[0]["status"] == "delivered")
    assert [(a["number"], a["status_code"]) for a in log[0]["attempts"]] == [(1, 200)]
    (headers, body), = receiver.posts("/alice")
    assert verify(own["secret"], body, headers["Evaluator-Signature"])
    shown = json.loads(body)["data"]["run"]
    assert shown["metrics"] == run["metrics"]
    assert all(round(v, 4) == v for v in shown["metrics"]["metrics"].values() if isinstance(v, float))

    # When a second run ends another way (cancelled in the API process, not the worker)
    second = submit(stack, alice, sleepy_bundle(60), "second")
    stack.wait_for(f"/v1/runs/{second}", alice, lambda r: r["status"] == "running", 120)
    assert stack.call("POST", f"/v1/runs/{second}/cancel", alice).status_code == 200
    # Then each receiver gets exactly one more delivery: one per run's terminal state
    log = deliveries(stack, alice, own["id"], lambda items: len(items) == 2 and items[0]["status"] == "delivered")
    assert {d["run_id"] for d in log} == {run_id, second}
    alice_posts = receiver.posts("/alice")
    assert len(alice_posts) == 2 and len({h["Evaluator-Delivery"] for h, _ in alice_posts}) == 2
    cancelled = json.loads(alice_posts[1][1])["data"]["run"]
    assert cancelled["id"] == second and cancelled["status"] == "cancelled"
    assert cancelled["failure"]["code"] == "cancelled"
    log = deliveries(stack, admin, manager["id"], lambda items: len(items) == 2 and items[0]["status"] == "delivered")
    assert len({h["Evaluator-Delivery"] for h, _ in receiver.posts("/manager")}) == 2

    # A deleted subscription is gone with its log
    assert stack.call("DELETE", f"/v1/webhooks/{own['id']}", alice).status_code == 204
    assert stack.call("GET", f"/v1/webhooks/{own['id']}/deliveries", alice).status_code == 404


def test_the_event_stream_delivers_every_stage_resumes_and_the_queue_shows_position_and_eta(
        push_stack, images_built):
    images_built("sklearn")
    stack = push_stack
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bob, _ = create_token("bob", "participant")
    # A run that takes longer than a stream may last (4 s here): the client resumes with Last-Event-ID
    first = submit(stack, alice, sleepy_bundle(6), "first")
    assert stack.call("GET", f"/v1/runs/{first}/events", bob).status_code == 404  # the visibility of GET /v1/runs
    seen, connections = events(stack, alice, first)
    assert [e["data"]["status"] for e in seen] == ["queued", "preparing", "running", "scoring", "succeeded"]
    assert [e["id"] for e in seen] == ["0-queued", "1-preparing", "1-running", "1-scoring", "1-succeeded"]
    assert connections >= 2
    assert seen[-1]["event"] == "finished"
    assert seen[-1]["data"]["run"] == {**stack.call("GET", f"/v1/runs/{first}", alice).json(),
                                       "queue_position": None, "eta_s": None}
    # Resuming after a stage sends only what follows it; after the end, 204 (EventSource stops)
    resumed, _ = events(stack, alice, first, last_event_id="1-running")
    assert [e["id"] for e in resumed] == ["1-scoring", "1-succeeded"]
    done = requests.get(f"{stack.url}/v1/runs/{first}/events", timeout=30,
                        headers={"Authorization": f"Bearer {alice}", "Last-Event-ID": "1-succeeded"})
    assert done.status_code == 204

    # Given no worker takes runs, two runs wait
    stack.kill(stack.workers[0])
    waiting = [submit(stack, alice, sklearn_bundle(seed), f"waiting-{seed}") for seed in (2, 3)]
    runs = [stack.call("GET", f"/v1/runs/{run_id}", alice).json() for run_id in waiting]
    assert [r["status"] for r in runs] == ["queued", "queued"]
    assert [r["queue_position"] for r in runs] == [1, 2]
    assert 0 < runs[0]["eta_s"] < runs[1]["eta_s"]  # from the first run's measured stages
    # One stream per API process here: a second one is refused with Retry-After while the first is open
    with requests.get(f"{stack.url}/v1/runs/{waiting[0]}/events", headers={"Authorization": f"Bearer {alice}"},
                      stream=True, timeout=30) as held:
        assert held.status_code == 200
        busy = stack.call("GET", f"/v1/runs/{waiting[1]}/events", alice)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        assert busy.json()["error"]["code"] == "too_many_streams"
        first_line = next(held.iter_lines(chunk_size=None, decode_unicode=True))
        assert first_line.startswith("retry: ")
    # When a worker starts again, both end, and the stream still shows each stage
    stack.start_worker()
    seen, _ = events(stack, alice, waiting[1])
    statuses = [e["data"]["status"] for e in seen]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and {"preparing", "running", "scoring"} <= set(
        statuses)
    assert seen[0]["id"] == "0-queued"


def test_cli_wait_follows_the_stream_and_polls_when_streams_are_refused(push_stack, images_built, tmp_path):
    images_built("sklearn")
    stack = push_stack
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    bundle = tmp_path / "sleepy.tar.gz"
    bundle.write_bytes(sleepy_bundle(3))
    env = {key: value for key, value in os.environ.items() if key != "EVALUATOR_TOKEN"}
    env.update({**stack.config.to_env(), "EVALUATOR_API_URL": stack.url, "EVALUATOR_TOKEN": alice,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    env.pop("EVALUATOR_CLIENT_CONFIG_FILE", None)

    def wait_cli() -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "evaluator"), "submit", str(bundle), "--benchmark", "iris", "--wait"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    # Over the stream: every stage is shown, the result printed, and the API served the stream
    before = len((stack.logs / "api.log").read_text())  # the module's stack: what earlier tests logged is not ours
    result = wait_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout and "accuracy" in result.stdout
    for stage in ("preparing", "running", "scoring"):
        assert f" {stage} (" in result.stderr, result.stderr
    access = (stack.logs / "api.log").read_text()[before:]
    assert "/events HTTP/1.1\" 200" in access

    # When the API refuses every stream (0 slots), --wait polls and still reports the result
    stack.restart_api(sse_max_streams=0)
    before = len((stack.logs / "api.log").read_text())
    result = wait_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout and "Traceback" not in result.stderr
    access = (stack.logs / "api.log").read_text()[before:]
    assert "/events HTTP/1.1\" 503" in access and "GET /v1/runs/" in access
