"""Resources for /v1/runs: read runs, their logs, and cancel them; participants see their own."""

from __future__ import annotations

import falcon

from evaluator import runs
from evaluator.api.hooks import authenticated
from evaluator.config import Config
from evaluator.errors import NotFound
from evaluator.storage.blobs import BlobStore

MAX_PAGE = 200


class RunCollection:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_PAGE, default=50)
        offset = req.get_param_as_int("offset", min_value=0, default=0)
        rows, total = runs.list_runs(req.context.principal, benchmark=req.get_param("benchmark"),
                                     status=req.get_param("status"), owner=req.get_param("owner"),
                                     limit=limit, offset=offset)
        resp.media = {"items": [runs.serialize(r) for r in rows], "total": total, "limit": limit, "offset": offset}


class RunItem:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        resp.media = runs.serialize(runs.get_run(run_id, req.context.principal))

    @falcon.before(authenticated)
    def on_get_logs(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        if not run.results_prefix:
            raise NotFound(f"run {run_id} has no log yet (status {run.status})")
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = self._blobs.get_bytes(self._config.results_bucket, run.results_prefix + "sandbox.log")

    @falcon.before(authenticated)
    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        resp.media = runs.serialize(runs.cancel(run_id, req.context.principal))
