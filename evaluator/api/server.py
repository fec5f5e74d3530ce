"""The API's gunicorn worker: the poller reads each request before a thread serves it.

gunicorn's `sync` worker serves one connection at a time, and its `gthread`
worker hands a connection to a thread at its first byte; the thread then
blocks until the whole request head is in. Either way N clients that send one
header line every few seconds hold N workers or threads, and /health waits
behind them. Here the worker's poller (one selector, no thread) reads the head,
and a small body, without blocking, under a deadline and a size cap; a thread
gets the connection only once its request is complete, so slow clients cost a
file descriptor and a buffer, never a thread. A larger or chunked body is read
by the thread through a socket whose every read is bounded by the request's
remaining time.

TLS connections are served as gthread serves them (the poller cannot read an
encrypted head): terminate TLS in a proxy in front.
"""

from __future__ import annotations

import html
import json
import logging
import re
import selectors
import socket
import time
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

from evaluator.api.errors import code_for

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; gunicorn's own limits apply after this too
PREREAD_BODY_BYTES = 64 * 1024  # bodies up to this are read by the poller; larger ones by the thread
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,19})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_TO_THE_THREAD = re.compile(rb"^(transfer-encoding|expect)[ \t]*:", re.IGNORECASE | re.MULTILINE)


class DeadlineSocket:
    """A socket whose reads fail with TimeoutError once the current request's deadline has passed.

    gunicorn's parser reads a request through `recv`; a per-read timeout alone
    lets a client that sends a byte just before each timeout hold a thread for
    ever, so every read here waits only for what is left of the request's time.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = float("inf")

    def recv(self, size: int, *flags: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        current = self._sock.gettimeout()  # gunicorn bounds its drain of an unread body with its own
        self._sock.settimeout(remaining if current is None else min(current, remaining))
        return self._sock.recv(size, *flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _JsonErrors:
    """The client socket as gunicorn's handle_error sees it: its HTML error page leaves as our JSON error."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(json_error_response(data))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def json_error_response(page: bytes) -> bytes:
    """Rewrite gunicorn's error response (a malformed request line, a bad header) as {"error": ...}."""
    head, _, body = page.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split(" ", 2)[1])
    found = re.search(r"</h1>\s*(.*?)\s*</body>", body.decode("latin-1"), re.S)
    message = html.unescape(found.group(1)) if found else ""
    if status == 500:
        message = "an internal error occurred; it has been logged"
    message = message or status_line[9:].strip()
    body = json.dumps({"error": {"code": code_for(status), "message": message[:500]}}).encode()  # ASCII: escapes
    return (f"{status_line}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class _Pending:
    """What the poller has read of one connection's next request."""

    def __init__(self, data: bytes, deadline: float) -> None:
        self.data = bytearray(data)
        self.deadline = deadline
        self.scanned = 0  # where the search for the head's end resumes (a byte-a-time head stays linear)
        self.needed: int | None = None  # total bytes (head + body) once the head is complete


class PollerReadWorker(ThreadWorker):
    """gthread, except that a request is read by the poller before a thread serves it."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0

    @classmethod
    def configured(cls, *, header_timeout_s: float, body_timeout_s: float) -> type[PollerReadWorker]:
        """Return a subclass with these timeouts: gunicorn takes a class as `worker_class`."""
        return type(cls.__name__, (cls,), {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reading: dict[TConn, _Pending] = {}

    # Every path to a thread goes through enqueue_req: a new connection, a kept-alive
    # one that became readable, and one whose previous request left bytes buffered.
    def enqueue_req(self, conn: TConn) -> None:
        if self.cfg.is_ssl or getattr(conn, "request_ready", False):
            conn.request_ready = False
            super().enqueue_req(conn)
            return
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        pending = _Pending(buffered, time.monotonic() + self.header_timeout_s)
        conn.sock.setblocking(False)
        self._reading[conn] = pending
        if not self._advance(conn, pending):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, sock: socket.socket) -> None:
        pending = self._reading[conn]
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._close(conn)
            return
        pending.data += data
        self._advance(conn, pending)

    def _advance(self, conn: TConn, pending: _Pending) -> bool:
        """Dispatch or refuse the connection when its request is complete; False while it needs more."""
        if pending.needed is None:
            end = _HEAD_END.search(pending.data, pending.scanned, MAX_HEAD_BYTES + 4)
            if end is None:
                pending.scanned = max(0, len(pending.data) - 3)
                if len(pending.data) <= MAX_HEAD_BYTES:
                    return False
                self._refuse(conn, 431, "too_large", f"the request head is over {MAX_HEAD_BYTES} bytes")
                return True
            head = bytes(pending.data[:end.end()])
            length = _CONTENT_LENGTH.search(head)
            body = int(length.group(1)) if length else 0
            if _TO_THE_THREAD.search(head) or body > PREREAD_BODY_BYTES:
                body = 0  # chunked, `Expect: 100-continue` or large: the thread reads it, under the deadline
            pending.needed = end.end() + body
            pending.deadline = time.monotonic() + self.body_timeout_s
        if len(pending.data) < pending.needed:
            return False
        self._dispatch(conn, pending)
        return True

    def _dispatch(self, conn: TConn, pending: _Pending) -> None:
        del self._reading[conn]
        self._unregister(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader.sock = DeadlineSocket(conn.sock)
        conn.parser.unreader.unread(bytes(pending.data))
        conn.parser.unreader.sock.deadline = pending.deadline
        conn.data_ready = True  # the thread must not wait for data the poller already has
        conn.request_ready = True
        self.enqueue_req(conn)

    def _refuse(self, conn: TConn, status: int, code: str, message: str) -> None:
        """Answer without a thread (best effort: the socket does not block) and close."""
        del self._reading[conn]
        self._unregister(conn)
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        try:
            conn.sock.send(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                           b"Connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body))
        except OSError:
            pass
        self.nr_conns -= 1
        conn.close()

    def _close(self, conn: TConn) -> None:
        del self._reading[conn]
        self._unregister(conn)
        self.nr_conns -= 1
        conn.close()

    def _unregister(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def handle_error(self, req, client, addr, exc) -> None:
        super().handle_error(req, _JsonErrors(client), addr, exc)

    def murder_pending(self) -> None:
        """Refuse requests not complete in time (the run loop calls this about once a second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, pending in [(c, p) for c, p in self._reading.items() if p.deadline <= now]:
            what = "head" if pending.needed is None else "body"
            limit = self.header_timeout_s if pending.needed is None else self.body_timeout_s
            self._refuse(conn, 408, "timeout", f"the request {what} did not arrive within {limit:g} s")
