"""ApiClient: what the CLI (and scripts) use to talk to the API and upload through grants."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any, Callable

import requests

from evaluator.errors import EvaluatorError, Unauthorized

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
Progress = Callable[[int, int], None]


class ClientError(EvaluatorError):
    """Raised when the API answers with an error or cannot be reached."""

    code = "client_error"


class ApiClient:
    def __init__(self, base_url: str, token: str = "", *, timeout_s: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout_s

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._session.request(method, self.base_url + path, timeout=self._timeout, **kwargs)
        except requests.ConnectionError:
            raise ClientError(f"cannot reach the API at {self.base_url} (is it running? set --api-url)") from None
        except requests.Timeout:
            raise ClientError(f"the API at {self.base_url} did not answer in {self._timeout}s") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": str(response.status_code), "message": response.text[:200]}
            if response.status_code == 401:
                raise Unauthorized(f"{error['message']} (check --token / EVALUATOR_TOKEN)")
            failure = ClientError(error["message"])
            failure.code = error.get("code", "error")
            raise failure
        return response.json() if response.headers.get("Content-Type", "").startswith("application/json") \
            else response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    # --- uploads through grants ------------------------------------------------------

    def submit(self, benchmark: str, bundle: Path, *, name: str, version: str, progress: Progress | None = None,
               multipart_threshold: int = 64 * 1024 * 1024) -> dict:
        """Ask for a grant and upload the bundle straight to the store; returns the submission."""
        size = bundle.stat().st_size  # declared: the grant signs it, so the store takes exactly this many bytes
        method = "multipart" if size > multipart_threshold else "put"
        grant = self.post(f"/v1/benchmarks/{benchmark}/submissions",
                          {"name": name, "version": version, "filename": bundle.name, "size": size, "method": method})
        upload_file(grant["upload"], bundle, progress=progress, client=self)
        return grant["submission"]

    def wait_for_run(self, submission_id: str, *, on_status: Callable[[dict], None] | None = None,
                     timeout_s: float = 3600, poll_s: float = 0.5) -> dict:
        """Poll until the submission's run reaches a final state."""
        deadline = time.monotonic() + timeout_s
        run_id = None
        while time.monotonic() < deadline:
            if run_id is None:
                runs = self.get(f"/v1/submissions/{submission_id}").get("runs") or []
                run_id = runs[0]["id"] if runs else None
                run = {"status": "waiting for the upload notification"}
            else:
                run = self.get(f"/v1/runs/{run_id}")
            if on_status:
                on_status(run)
            if run.get("status") in TERMINAL:
                return run
            time.sleep(poll_s)
        raise ClientError(f"the run did not finish within {timeout_s}s")


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
    """Upload a file with a grant of any method (PUT, POST policy, multipart)."""
    total, done = path.stat().st_size, [0]
    with open(path, "rb") as handle:
        if grant["method"] == "put":
            # The grant signs these (Content-Length, Content-Type, If-None-Match): the store refuses others.
            response = requests.put(grant["url"], data=_ProgressReader(handle, total, progress, done, total),
                                    headers=grant.get("headers") or {}, timeout=600)
        elif grant["method"] == "post":
            response = requests.post(grant["url"], data=grant["fields"], files={"file": (path.name, handle)},
                                     timeout=600)
            if progress:
                progress(total, total)
        else:
            parts = []
            for part in grant["parts"]:
                length = min(grant["part_size"], total - done[0])
                reply = requests.put(part["url"], data=_ProgressReader(handle, length, progress, done, total),
                                     timeout=600)
                _raise_for_store(reply)
                parts.append({"part_number": part["part_number"], "etag": reply.headers["ETag"]})
            assert client is not None, "a multipart upload is completed through the API"
            client.post(grant["complete"], {"parts": parts})
            return
    _raise_for_store(response)


def _raise_for_store(response: requests.Response) -> None:
    if response.status_code >= 300:
        raise ClientError(f"the object store refused the upload ({response.status_code}): {response.text[:300]}")


def progress_bar(stream: IO[str] = sys.stderr) -> Progress:
    """Return a callback drawing `[#####.....] 42% 4.2/10.0 MiB` on one line."""
    last = [-1]

    def draw(done: int, total: int) -> None:
        percent = int(done * 100 / total) if total else 100
        if percent == last[0]:
            return
        last[0] = percent
        filled = percent // 4
        stream.write(f"\rupload [{'#' * filled}{'.' * (25 - filled)}] {percent:3d}% "
                     f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw
