"""The live API (gunicorn through `evaluator api`) against slow and oversized clients.

With `sync` workers, 4 anonymous sockets that sent one header line every 5 s
made /health time out for as long as they stayed open; a 256 MiB JSON body
took a worker to ~1 GB. The API under test has ONE worker process.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from evaluator.storage.seaweed import free_port
from tests.conftest import EVENTS_HEADERS, EVENTS_TOKEN, make_config
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 50
MAX_BODY = 64 * 1024


def start_api(s3_server, database_url: str, redis_url: str, tmp_path, timeout_s: float) -> Stack:
    """Only the API through `evaluator api`: one gunicorn worker, these head and body timeouts."""
    from evaluator.storage.blobs import BlobStore

    config = make_config(s3_server.endpoint_url, database_url, redis_url, tmp_path / "work", api_port=free_port(),
                         api_workers=1, api_header_timeout_s=timeout_s, api_body_timeout_s=timeout_s,
                         api_max_body_bytes=MAX_BODY, log_level="INFO")
    BlobStore.from_config(config).ensure_buckets(config.bundles_bucket)
    (tmp_path / "logs").mkdir()
    stack = Stack(config, tmp_path / "logs")
    stack.start_api()
    return stack


@pytest.fixture(scope="module")
def api_server(s3_server, database_url, redis_url, migrated_database, tmp_path_factory):
    """The API with timeouts (60 s) longer than any test here: slow clients stay connected.

    One for the module: every test closes its sockets, and none writes to the database.
    """
    stack = start_api(s3_server, database_url, redis_url, tmp_path_factory.mktemp("patient"), 60)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def impatient_api(s3_server, database_url, redis_url, migrated_database, tmp_path_factory):
    """The API with 3 s head and body timeouts, so its refusals are seen quickly (one for the module)."""
    stack = start_api(s3_server, database_url, redis_url, tmp_path_factory.mktemp("impatient"), 3)
    yield stack
    stack.stop()


class Trickle:
    """Sockets that send a request a few bytes at a time, each part well inside the API's per-part patience."""

    def __init__(self, port: int, count: int, first: bytes, drip: bytes, every_s: float = 0.5) -> None:
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(first)
            self.sockets.append(sock)
        self._drip, self._every_s = drip, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            for sock in self.sockets:
                try:
                    sock.sendall(self._drip)
                except OSError:
                    pass

    def all_waiting(self) -> bool:
        """Return True when every socket is still open and unanswered (the server is still holding it)."""
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                sock.recv(1, socket.MSG_PEEK)
                return False  # closed, or answered: the server gave up on it
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def health_answers(stack: Stack, attempts: int = 5) -> list[int]:
    """Request /health `attempts` times with a generous client timeout (5 s; one answered in ~ms before)."""
    return [requests.get(stack.url + "/health", timeout=5).status_code for _ in range(attempts)]


def test_health_answers_while_fifty_clients_trickle_their_headers(api_server):
    slow = Trickle(api_server.config.api_port, SLOW_CLIENTS, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n")
    try:
        time.sleep(1)  # every slow socket has been accepted and has sent a header line or two
        assert health_answers(api_server) == [200] * 5
        assert slow.all_waiting()  # they were all still connected while /health answered
    finally:
        slow.close()


def test_health_answers_while_fifty_clients_trickle_their_bodies(api_server):
    head = (b"POST /v1/events/s3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + EVENTS_TOKEN.encode() + b"\r\nContent-Length: 4000\r\n\r\n")
    slow = Trickle(api_server.config.api_port, SLOW_CLIENTS, head + b'{"Records": [', b" ")
    try:
        time.sleep(1)
        assert health_answers(api_server) == [200] * 5
        assert slow.all_waiting()
    finally:
        slow.close()


def read_response(sock: socket.socket, timeout_s: float = 20) -> tuple[int, dict]:
    """Read one HTTP response (status, JSON body) from a raw socket."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(head.split()[1]), json.loads(body[:length])


@pytest.mark.parametrize("what, request_bytes", [
    ("head", b"GET /health HTTP/1.1\r\nHost: x\r\nX-a: b\r\n"),
    ("body", b"POST /v1/events/s3 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"),
])
def test_a_request_that_stalls_past_its_timeout_gets_408(impatient_api, what, request_bytes):
    with socket.create_connection(("127.0.0.1", impatient_api.config.api_port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, body = read_response(sock)  # the API gives up after 3 s (impatient_api's timeouts)
    assert status == 408 and body["error"]["code"] == "timeout"
    assert what in body["error"]["message"]


def test_a_chunked_body_that_stalls_past_its_timeout_gets_408(impatient_api):
    with socket.create_connection(("127.0.0.1", impatient_api.config.api_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/events/s3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n")
        status, body = read_response(sock)
    assert status == 408 and body["error"]["code"] == "timeout"


ROUTES_WITH_BODIES = ["/v1/events/s3", "/v1/datasets", "/v1/benchmarks", "/v1/benchmarks/b/submissions",
                      "/v1/tokens", "/health"]


@pytest.mark.parametrize("path", ROUTES_WITH_BODIES)
def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(api_server, path):
    with socket.create_connection(("127.0.0.1", api_server.config.api_port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {EVENTS_TOKEN}\r\nContent-Length: {256 * 1024 * 1024}\r\n\r\n".encode())
        status, body = read_response(sock)
    assert status == 413 and body["error"]["code"] == "too_large"
    assert str(MAX_BODY) in body["error"]["message"]


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_read(api_server):
    def chunks():
        piece = b" " * 8192
        for _ in range(MAX_BODY // len(piece) + 8):
            yield piece

    response = requests.post(api_server.url + "/v1/events/s3", data=chunks(), timeout=30,
                             headers={**EVENTS_HEADERS, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    # A chunked body under the limit is read and parsed like any other.
    small = requests.post(api_server.url + "/v1/events/s3", data=iter([b'{"Records"', b": []}"]), timeout=30,
                          headers={**EVENTS_HEADERS, "Content-Type": "application/json"})
    assert small.status_code == 200, small.text
    assert requests.get(api_server.url + "/health", timeout=5).status_code == 200


def test_a_request_head_over_64_kib_gets_431_without_a_thread(api_server):
    with socket.create_connection(("127.0.0.1", api_server.config.api_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * (70 * 1024) + b"\r\n")
        status, body = read_response(sock)
    assert status == 431 and body["error"]["code"] == "too_large"
    assert requests.get(api_server.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("request_line", [
    b"GET /v1/benchmarks/\x00 HTTP/1.1", b"GET /v1/benchmarks/\x1b[2J HTTP/1.1", b"GET /v1/runs?status=\x01 HTTP/1.1",
    b"GET /v1/benchmarks/\xff HTTP/1.1", b"GET /v1/benchmarks/" + b"a" * 5000 + b" HTTP/1.1",
    b"GET /v1/benchmarks/%00 HTTP/1.1", b"GET /v1/benchmarks/%zz%c0%80 HTTP/1.1",
])
def test_raw_control_bytes_in_the_request_line_get_a_4xx_json_error(api_server, request_line):
    with socket.create_connection(("127.0.0.1", api_server.config.api_port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        status, body = read_response(sock)
    assert 400 <= status < 500 and set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] != "error"
