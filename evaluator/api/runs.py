"""Resources for /v1/runs: read runs, logs and predictions, select finals, cancel; participants see their own."""

from __future__ import annotations

import falcon

from evaluator import competition, run_events, run_plots, runs, waiting
from evaluator.api.operations import EMPTY, SVG, TEXT, TOKEN, Media, operation
from evaluator.config import Config
from evaluator.contract import inputs, outputs
from evaluator.errors import NotFound
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import database
from evaluator.storage.models import Benchmark, Run
from evaluator.tokens import Principal


def predictions_url(run: Run, config: Config, blobs: BlobStore, expires_s: int = 300) -> str:
    """A short-lived presigned GET of a run's predictions (the caller has already been allowed to see the run)."""
    if not run.results_prefix:
        raise NotFound(f"run {run.id} has no predictions.parquet yet (status {run.status})")
    key = run.results_prefix + "predictions.parquet"
    if blobs.head(config.results_bucket, key) is None:
        raise NotFound(f"run {run.id} has no predictions")
    return blobs.presign_get(config.results_bucket, key, expires_s)


def shape(run: Run, principal: Principal) -> dict:
    """Serialize a run for this caller: managers see the dataset's hashes and platform failures' causes."""
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    return runs.serialize(run, show_private=competition.shows_private(benchmark, principal),
                          manager=competition.manages(benchmark, principal),
                          hide_public=competition.ladder_hides(benchmark, principal))


class RunCollection:
    @operation("listRuns", "The caller's runs, newest first (an admin's: everyone's)", tag="runs", access=TOKEN,
               query=inputs.RunQuery, responses={200: outputs.RunPage})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        rows, total = runs.list_runs(req.context.principal, benchmark=query.benchmark, status=query.status,
                                     owner=query.owner, limit=query.limit, offset=query.offset)
        resp.media = {"items": [shape(r, req.context.principal) for r in rows], "total": total,
                      "limit": query.limit, "offset": query.offset}


class RunItem:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @operation("getRun", "One run: status, metrics, failure, provenance", tag="runs", access=TOKEN,
               responses={200: outputs.Run}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        resp.media = {**shape(run, req.context.principal), **waiting.estimate(run)}

    @operation("updateRun", "Flag (or unflag) a run as a baseline (the benchmark's managers)", tag="runs",
               access=TOKEN, body=inputs.RunPatch, responses={200: outputs.Run}, errors=(403, 404))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        run = runs.set_baseline(run, req.context.principal, req.context.body.get("baseline"))
        resp.media = shape(run, req.context.principal)

    def _result_key(self, run: Run, name: str) -> str:
        if not run.results_prefix:
            raise NotFound(f"run {run.id} has no {name} yet (status {run.status})")
        return run.results_prefix + name

    @operation("getRunLog", "The run's capped sandbox log, as the benchmark's log policy allows", tag="runs",
               access=TOKEN, responses={200: TEXT}, errors=(403, 404, 503))
    def on_get_logs(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        log = self._blobs.get_bytes(self._config.results_bucket, self._result_key(run, "sandbox.log"))
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = competition.log_view(Benchmark.get_by_id(run.benchmark_id), req.context.principal, log)

    @operation("getRunPredictions", "A short-lived presigned GET of the run's predictions", tag="runs",
               access=TOKEN, responses={200: outputs.PredictionsUrl}, errors=(404, 503))
    def on_get_predictions(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        """A short-lived presigned GET of the run's predictions, issued only to who may see the run."""
        run = runs.get_run(run_id, req.context.principal)
        resp.media = {"url": predictions_url(run, self._config, self._blobs), "expires_in": 300}

    @operation("listRunPlots", "The run's plots (participants: bins of >= k rows; managers: exact)", tag="runs",
               access=TOKEN, responses={200: outputs.PlotList}, errors=(404, 503))
    def on_get_plots(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        plots = run_plots.list_plots(run_id, req.context.principal, blobs=self._blobs,
                                     bucket=self._config.results_bucket)
        resp.media = {"run": str(plots.run.id), "variant": plots.variant,
                      "items": [{"name": e.name, "title": e.title, "url": f"/v1/runs/{plots.run.id}/plots/{e.name}"}
                                for e in plots.entries], "pending": plots.pending}

    @operation("getRunPlot", "One plot of the run as SVG, the caller's variant", tag="runs", access=TOKEN,
               responses={200: SVG}, errors=(404, 503))
    def on_get_plot(self, req: falcon.Request, resp: falcon.Response, run_id: str, name: str) -> None:
        plots = run_plots.list_plots(run_id, req.context.principal, blobs=self._blobs,
                                     bucket=self._config.results_bucket)
        resp.data = run_plots.plot_svg(plots, name, blobs=self._blobs, bucket=self._config.results_bucket)
        resp.content_type = "image/svg+xml"
        resp.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        resp.set_header("X-Content-Type-Options", "nosniff")

    @operation("selectFinalRun", "Select (or unselect) the run for the final leaderboard", tag="runs",
               access=TOKEN, body=inputs.FinalIn, responses={200: outputs.Run}, errors=(404, 409))
    def on_post_final(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = runs.get_run(run_id, req.context.principal)
        selected = req.context.body.get("selected", True)
        resp.media = shape(competition.select_final(run, req.context.principal, selected), req.context.principal)

    @operation("cancelRun", "Cancel a run that has not ended (its container is stopped)", tag="runs",
               access=TOKEN, responses={200: outputs.Run}, errors=(404, 409))
    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        resp.media = shape(runs.cancel(run_id, req.context.principal), req.context.principal)


StreamSlots = run_events.StreamSlots
# The schema of one event as OpenAPI 3.2 / schemathesis read a stream: its fields, `data` as the JSON text.
EVENT_STREAM = Media(("text/event-stream",), {"type": "object", "properties": {
    "event": {"type": "string", "enum": ["stage", "finished"]}, "data": {"type": "string"},
    "id": {"type": "string"}, "retry": {"type": "integer"}}, "description": (
    "`event: stage` per status reached (`data`: run_id, status, attempt, at; the newest also queue_position, "
    "eta_s), then `event: finished` with the run as GET /v1/runs/{id} shows it; `id:` lines for Last-Event-ID")})


class RunEvents:
    """GET /v1/runs/{id}/events: the run's stages as server-sent events (see evaluator.run_events)."""

    def __init__(self, config: Config, slots: run_events.StreamSlots) -> None:
        self._config = config
        self._slots = slots

    @operation("streamRunEvents", "The run's status changes as server-sent events, until it ends", tag="runs",
               access=TOKEN, responses={200: EVENT_STREAM, 204: EMPTY}, errors=(404, 503),
               description=run_events.__doc__.split("\n\n")[2])
    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        principal = req.context.principal
        run = runs.get_run(run_id, principal)  # the same visibility as GET /v1/runs/{id}
        last_event_id = (req.get_header("Last-Event-ID") or "")[:40] or None
        events = run_events.stage_events(run)
        if last_event_id == events[-1].id and run.status in run_events.TERMINAL:
            resp.status = falcon.HTTP_204  # the client saw the end: EventSource stops reconnecting on 204
            return
        release = self._slots.take()
        key = str(run.id)

        def read() -> run_events.Snapshot:
            with database.connection_context():
                row = Run.get_by_id(key)
                ended = row.status in run_events.TERMINAL
                return run_events.Snapshot(run_events.stage_events(row), {} if ended else waiting.estimate(row),
                                           shape(row, principal) if ended else None)

        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
        resp.stream = run_events.EventStream(
            read, run_id=key, last_event_id=last_event_id, release=release,
            max_duration_s=self._config.sse_max_duration_s, poll_s=self._config.sse_poll_s,
            heartbeat_s=self._config.sse_heartbeat_s)
