"""Resources for /v1/runs: read runs, logs and predictions, select finals, cancel; participants see their own."""

from __future__ import annotations

import falcon

from evaluator import competition, runs
from evaluator.api.hooks import authenticated, json_body
from evaluator.config import Config
from evaluator.errors import NotFound, ValidationFailed
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Benchmark, Run
from evaluator.tokens import Principal

MAX_PAGE = 200


def shape(run: Run, principal: Principal) -> dict:
    """Serialize a run for this caller: managers see the dataset's hashes and platform failures' causes."""
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    return runs.serialize(run, show_private=competition.shows_private(benchmark, principal),
                          manager=competition.manages(benchmark, principal))


class RunCollection:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_PAGE, default=50)
        offset = req.get_param_as_int("offset", min_value=0, default=0)
        rows, total = runs.list_runs(req.context.principal, benchmark=req.get_param("benchmark"),
                                     status=req.get_param("status"), owner=req.get_param("owner"),
                                     limit=limit, offset=offset)
        resp.media = {"items": [shape(r, req.context.principal) for r in rows], "total": total, "limit": limit,
                      "offset": offset}


class RunItem:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        resp.media = shape(runs.get_run(run_id, req.context.principal), req.context.principal)

    def _result_key(self, run: Run, name: str) -> str:
        if not run.results_prefix:
            raise NotFound(f"run {run.id} has no {name} yet (status {run.status})")
        return run.results_prefix + name

    @falcon.before(authenticated)
    def on_get_logs(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        log = self._blobs.get_bytes(self._config.results_bucket, self._result_key(run, "sandbox.log"))
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = competition.log_view(Benchmark.get_by_id(run.benchmark_id), req.context.principal, log)

    @falcon.before(authenticated)
    def on_get_predictions(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        """A short-lived presigned GET of the run's predictions, issued only to who may see the run."""
        run = runs.get_run(run_id, req.context.principal)
        key = self._result_key(run, "predictions.parquet")
        if self._blobs.head(self._config.results_bucket, key) is None:
            raise NotFound(f"run {run.id} has no predictions")
        resp.media = {"url": self._blobs.presign_get(self._config.results_bucket, key, 300), "expires_in": 300}

    @falcon.before(authenticated)
    @falcon.before(json_body)
    def on_post_final(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        selected = req.context.body.get("selected", True)
        if not isinstance(selected, bool):
            raise ValidationFailed("'selected' must be true or false", field="selected")
        resp.media = shape(competition.select_final(run, req.context.principal, selected), req.context.principal)

    @falcon.before(authenticated)
    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        resp.media = shape(runs.cancel(run_id, req.context.principal), req.context.principal)
