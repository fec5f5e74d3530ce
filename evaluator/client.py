"""ApiClient: what the CLI (and scripts) use to talk to the API and upload through grants.

Infrastructure blips are ridden out here, not shown: a refused connection is retried with
backoff on every call (nothing was sent), a 502/503/504 or a dropped answer only on idempotent
ones (GET, PUT, DELETE), and `wait_for_run` keeps polling through an API restart. What is left
is one sentence with a code: `unreachable` when the platform cannot be reached, `store_*` for
the object store (its XML never reaches the user), or the API's own error.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from evaluator.errors import EvaluatorError, Unauthorized, clean_message

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
Progress = Callable[[int, int], None]
RETRY_STATUSES = (502, 503, 504)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_STORE_ERROR_BYTES = 4096  # an S3 error document is small; never read more of one
_XML_FIELD = re.compile(rb"<(Code|Message)>([^<]{0,300})</\1>")


class ClientError(EvaluatorError):
    """Raised when the API refuses a request; the CLI exits 2 (3 for the platform's own 5xx)."""

    code = "client_error"
    exit_status = 2


class Unreachable(ClientError):
    """Raised when the API cannot be reached or keeps failing after the retries."""

    code = "unreachable"
    exit_status = 3


class StoreError(ClientError):
    """Raised when the object store refuses an upload or cannot be reached; one sentence, no XML."""

    code = "store_error"
    exit_status = 3


class GrantExpired(StoreError):
    """Raised when the store says the upload grant has expired."""

    code = "grant_expired"


def _session(token: str, retries: int) -> requests.Session:
    session = requests.Session()
    # NOTE: connect errors are retried for every method (the request was never sent); read errors and
    # 502/503/504 only for idempotent methods, so a POST is never sent twice.
    retry = Retry(total=None, connect=retries, read=retries, status=retries, other=0, redirect=0,
                  allowed_methods=IDEMPOTENT, status_forcelist=RETRY_STATUSES, backoff_factor=0.5,
                  backoff_max=8, respect_retry_after_header=True, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


class ApiClient:
    def __init__(self, base_url: str, token: str = "", *, timeout_s: float = 30, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = _session(token, retries)
        self._stream_session = _session(token, 0)  # no retries: a failed stream falls back to polling at once
        self._timeout = (min(5.0, timeout_s), timeout_s)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with _transport_errors(
                Unreachable,
                unreachable=f"cannot reach the API at {self.base_url} (is it running? set --api-url or "
                            "EVALUATOR_API_URL)",
                timed_out=f"the API at {self.base_url} did not answer in {self._timeout[1]:g}s",
                failed=f"the request to the API at {self.base_url} failed"):
            response = self._session.request(method, self.base_url + path, timeout=self._timeout, **kwargs)
        if response.status_code >= 400:
            raise _api_error(response)
        if response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                return response.json()
            except ValueError:
                raise Unreachable(f"the API at {self.base_url} answered {response.status_code} with broken JSON") \
                    from None
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    def patch(self, path: str, body: dict) -> Any:
        return self.request("PATCH", path, json=body)

    # --- uploads through grants ------------------------------------------------------

    def submit(self, benchmark: str, bundle: Path, *, name: str, version: str, progress: Progress | None = None,
               multipart_threshold: int = 64 * 1024 * 1024, baseline: bool = False, phase: str | None = None) -> dict:
        """Ask for a grant and upload the file straight to the store; returns the submission.

        The file is a model bundle or, for benchmarks that take them, a predictions file (.csv,
        .parquet): the API tells them apart by the name.

        A grant the store calls expired is asked for again, once (a new submission: the old one
        is never uploaded and ends with its grant).
        """
        size = bundle.stat().st_size  # declared: the grant signs it, so the store takes exactly this many bytes
        method = "multipart" if size > multipart_threshold else "put"
        body = {"name": name, "version": version, "filename": bundle.name, "size": size, "method": method}
        if baseline:
            body["baseline"] = True
        if phase:
            body["phase"] = phase
        for attempt in (1, 2):
            grant = self.post(f"/v1/benchmarks/{benchmark}/submissions", body)
            try:
                upload_file(grant["upload"], bundle, progress=progress, client=self)
                return grant["submission"]
            except GrantExpired as ex:
                if attempt == 2:
                    raise GrantExpired(f"{ex.message}; a new grant expired too: check the clocks of this machine, "
                                       "the API and the store, and EVALUATOR_UPLOAD_EXPIRY_S") from None
        raise AssertionError("not reached")

    def wait_for_run(self, submission_id: str, *, on_status: Callable[[dict], None] | None = None,
                     timeout_s: float = 3600, poll_s: float = 0.5, outage_s: float = 300,
                     stream: bool = True) -> dict:
        """Wait until the submission's run reaches a final state, riding out API outages up to `outage_s`.

        Once the run exists, its server-sent events (GET /v1/runs/{id}/events) say each stage as it
        happens; when the stream cannot be had (an older API, 503: the API's streams are all taken, a
        dropped connection) this polls GET /v1/runs/{id} instead and tries the stream again later.
        """
        deadline = time.monotonic() + timeout_s
        run_id: str | None = None
        down_since: float | None = None
        stream_at = 0.0  # when to try the stream (again)
        last_event_id: str | None = None
        while time.monotonic() < deadline:
            if stream and run_id is not None and down_since is None and time.monotonic() >= stream_at:
                try:
                    ended, last_event_id = self._follow_events(run_id, on_status, last_event_id, deadline)
                except _StreamUnavailable:
                    stream_at = time.monotonic() + STREAM_RETRY_S  # poll meanwhile
                else:
                    if ended is not None:
                        return ended
                    continue  # the stream's time was up: resume where it stopped
            try:
                if run_id is None:
                    runs = self.get(f"/v1/submissions/{submission_id}").get("runs") or []
                    run_id = runs[0]["id"] if runs else None
                    run = {"status": "waiting for the upload notification"}
                else:
                    run = self.get(f"/v1/runs/{run_id}")
                down_since = None
            except Unreachable as ex:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > outage_s:
                    raise Unreachable(f"{ex.message}; gave up after {outage_s:g}s (the run goes on: "
                                      f"`evaluator runs show {run_id or 'RUN'}` later)") from None
                run = {"id": run_id or "", "status": "API unreachable, retrying"}
            if on_status:
                on_status(run)
            if run.get("status") in TERMINAL:
                return run
            if run_id is not None and down_since is None and time.monotonic() >= stream_at:
                continue  # the run exists now: follow its stream at once
            time.sleep(poll_s if down_since is None else min(5.0, 1 + time.monotonic() - down_since))
        raise Unreachable(f"the run did not finish within {timeout_s:g}s (`evaluator runs show {run_id}`)")

    def _follow_events(self, run_id: str, on_status: Callable[[dict], None] | None, last_event_id: str | None,
                       deadline: float) -> tuple[dict | None, str | None]:
        """Read the run's event stream; returns (the ended run or None when the stream stopped first, last id).

        Raises:
            _StreamUnavailable: no stream now (refused, dropped, or not an event stream): poll instead.
        """
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        try:
            with self._stream_session.get(f"{self.base_url}/v1/runs/{run_id}/events", headers=headers, stream=True,
                                          timeout=(min(5.0, self._timeout[1]), STREAM_READ_TIMEOUT_S)) as response:
                if response.status_code == 204:
                    return self._ended(run_id, None, on_status), last_event_id  # its end was seen already
                if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
                        "text/event-stream"):
                    raise _StreamUnavailable(f"the API answered {response.status_code}")  # polling says why
                for event, data, event_id in _events(response):
                    last_event_id = event_id or last_event_id
                    if event == "finished":
                        return self._ended(run_id, data.get("run"), on_status), last_event_id
                    if event == "stage" and on_status:
                        on_status({**data, "id": run_id})
                    if time.monotonic() > deadline:
                        break
        except (requests.RequestException, ValueError) as ex:
            raise _StreamUnavailable(type(ex).__name__) from None
        return None, last_event_id

    def _ended(self, run_id: str, run: dict | None, on_status: Callable[[dict], None] | None) -> dict:
        """The ended run (as the stream gave it, or read now), reported like every status before it."""
        ended = run or self.get(f"/v1/runs/{run_id}")
        if on_status:
            on_status(ended)
        return ended


STREAM_RETRY_S = 10.0  # after a failed stream, poll this long before trying it again
STREAM_READ_TIMEOUT_S = 60.0  # the API sends a heartbeat every 15 s (EVALUATOR_SSE_HEARTBEAT_S)
STREAM_LINE_BYTES = 1024 * 1024  # an event line longer than this is not one of ours


class _StreamUnavailable(Exception):
    """The event stream could not be read; the caller polls instead."""


def _events(response: requests.Response):  # type: ignore[no-untyped-def]
    """Parse a text/event-stream body into (event, data as JSON, id) triples; comments are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    # chunk_size None: lines as the bytes arrive (the stubs want an int)
    for raw in response.iter_lines(chunk_size=None, decode_unicode=False):  # type: ignore[call-overload]
        if len(raw) > STREAM_LINE_BYTES:
            raise ValueError("an event line is too long")
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), event_id
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def _api_error(response: requests.Response) -> EvaluatorError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = str(response.status_code), f"the API answered {response.status_code} " \
                                                   f"({clean_message(response.reason or '', 80)})"
    if response.status_code == 401:
        return Unauthorized(f"{message} (check --token, EVALUATOR_TOKEN or `evaluator login`)")
    failure = (Unreachable if response.status_code >= 500 else ClientError)(message)
    failure.code = code
    return failure


class _ProgressReader:
    """A file slice that reports bytes read; requests sends it with a Content-Length."""

    def __init__(self, handle: IO[bytes], length: int, progress: Progress | None, done: list[int], total: int):
        self._handle, self._left, self._progress, self._done, self._total = handle, length, progress, done, total
        self.len = length

    def __len__(self) -> int:
        return self.len

    def read(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        self._done[0] += len(data)
        if self._progress:
            self._progress(self._done[0], self._total)
        return data


def upload_file(grant: dict, path: Path, *, progress: Progress | None = None, client: ApiClient | None = None) -> None:
    """Upload a file with a grant of any method (PUT, POST policy, multipart); store errors are one sentence."""
    total, done = path.stat().st_size, [0]
    with open(path, "rb") as handle:
        if grant["method"] == "put":
            # The grant signs these (Content-Length, Content-Type, If-None-Match): the store refuses others.
            response = _to_store(requests.put, grant["url"], data=_ProgressReader(handle, total, progress, done, total),
                                 headers=grant.get("headers") or {})
        elif grant["method"] == "post":
            response = _to_store(requests.post, grant["url"], data=grant["fields"],
                                 files={"file": (path.name, handle)})
            if progress:
                progress(total, total)
        else:
            parts = []
            for part in grant["parts"]:
                length = min(grant["part_size"], total - done[0])
                reply = _to_store(requests.put, part["url"],
                                  data=_ProgressReader(handle, length, progress, done, total))
                _raise_for_store(reply)
                parts.append({"part_number": part["part_number"], "etag": reply.headers["ETag"]})
            assert client is not None, "a multipart upload is completed through the API"
            client.post(grant["complete"], {"parts": parts})
            return
    _raise_for_store(response)


def _to_store(send: Callable[..., requests.Response], url: str, **kwargs: Any) -> requests.Response:
    """Send one upload request; a connection problem becomes StoreError naming the store, not a traceback."""
    where = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    with _transport_errors(
            StoreError,
            unreachable=f"cannot reach the object store at {where} (the API's /health says whether it is "
                        "up; EVALUATOR_S3_PUBLIC_ENDPOINT_URL is what clients use)",
            timed_out=f"the object store at {where} stopped answering during the upload",
            failed=f"the upload to the object store at {where} failed"):
        return send(url, timeout=(10, 600), **kwargs)


@contextlib.contextmanager
def _transport_errors(failure: type[ClientError], *, unreachable: str, timed_out: str,
                      failed: str) -> Iterator[None]:
    """Turn a requests transport error (API or store) into `failure` with its sentence, never a traceback."""
    try:
        yield
    except requests.ConnectionError:
        raise failure(unreachable) from None
    except requests.Timeout:
        raise failure(timed_out) from None
    except requests.RequestException as ex:
        raise failure(f"{failed} ({type(ex).__name__})") from None


def _raise_for_store(response: requests.Response) -> None:
    if response.status_code < 300:
        return
    head = b""
    for chunk in response.iter_content(1024):
        head += chunk
        if len(head) >= _STORE_ERROR_BYTES:
            break
    fields = {name.decode(): value.decode("utf-8", "replace").strip() for name, value in _XML_FIELD.findall(head)}
    code, message = fields.get("Code", ""), fields.get("Message", "")
    said = clean_message(": ".join(part for part in (code, message) if part) or f"HTTP {response.status_code}", 300)
    if "expired" in message.lower() or code in ("ExpiredToken", "RequestExpired"):
        raise GrantExpired(f"the object store refused the upload: the grant expired ({said})")
    raise StoreError(f"the object store refused the upload ({response.status_code} {said})")
