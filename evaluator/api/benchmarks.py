"""Resources for /v1/benchmarks: parse, call evaluator.benchmarks, shape the response."""

from __future__ import annotations

import falcon

from evaluator import benchmarks, comparisons, leaderboard, phases, quotas, row_store
from evaluator.api.operations import OPTIONAL, TOKEN, operation, roles
from evaluator.config import Config
from evaluator.contract import inputs, outputs
from evaluator.intake import Queues
from evaluator.storage.blobs import BlobStore
from evaluator.tokens import Principal


class BenchmarkCollection:
    def __init__(self, config: Config) -> None:
        self._config = config

    @operation("listBenchmarks", "Benchmarks visible to the caller (public ones to anyone)", tag="benchmarks",
               access=OPTIONAL, responses={200: outputs.BenchmarkList})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [benchmarks.serialize(b) for b in benchmarks.visible_to(req.context.principal)]}

    @operation("createBenchmark", "Create a benchmark (admin or owner)", tag="benchmarks",
               access=roles("admin", "owner"), body=inputs.BenchmarkIn, responses={201: outputs.Benchmark},
               errors=(409,))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        benchmark = benchmarks.create_benchmark(req.context.body, req.context.principal, config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/benchmarks/{benchmark.id}"
        resp.media = benchmarks.serialize(benchmark)


class BenchmarkItem:
    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    @operation("getBenchmark", "One benchmark", tag="benchmarks", access=OPTIONAL,
               responses={200: outputs.Benchmark}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        resp.media = benchmarks.serialize(benchmarks.get_benchmark(benchmark_id, req.context.principal))

    @operation("updateBenchmark", "Change metrics, primary metric, dataset, title or settings (admin or owner)",
               tag="benchmarks", access=TOKEN, body=inputs.BenchmarkPatch, responses={200: outputs.Benchmark},
               errors=(403, 404))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.update_benchmark(benchmark_id, req.context.body, req.context.principal)
        resp.media = benchmarks.serialize(benchmark)

    @operation("rescoreBenchmark", "Re-score every succeeded run from its stored predictions (admin or owner)",
               tag="benchmarks", access=TOKEN, responses={202: outputs.RescoreQueued}, errors=(403, 404))
    def on_post_rescore(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        run_ids = benchmarks.rescore_benchmark(benchmark_id, req.context.principal, self._queues.rescore_run)
        resp.status = falcon.HTTP_202
        resp.media = {"queued": len(run_ids), "runs": run_ids}


def leaderboard_for(benchmark_id: str, principal: Principal | None, view: str | None,
                    at: str | None = None, phase: str | None = None, *, offset: int = 0,
                    limit: int | None = None, rows: row_store.RowStore | None = None) -> dict:
    """The leaderboard this caller sees (the JSON endpoint's and the web page's one rule).

    Managers may preview the private ranking before close (view "private") and read it live and exact;
    everyone sees it after close; in the frozen window a participant reads it as it stood at the freeze.
    `offset`/`limit` give one page of it (ranks are the whole board's).
    """
    benchmark = benchmarks.get_benchmark(benchmark_id, principal)
    return leaderboard.board_for(benchmark, principal, view=view, at=at, offset=offset, limit=limit,
                                 phase=phases.board_phase(benchmark, phase, principal), rows=rows)


class Leaderboard:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._rows = row_store.shared(blobs, config)

    @operation("getLeaderboard", "Best run per participant, ranked; baselines listed unranked", tag="benchmarks",
               access=OPTIONAL, query=inputs.LeaderboardQuery, responses={200: outputs.Leaderboard}, errors=(404,),
               description="`?at=<ISO time>` gives the board as it stood then (runs finished by then, the "
                           "scores and rules then in force). In the frozen window (settings.freeze_at or "
                           "freeze_before_close_s) participants get the board at the freeze; managers live. "
                           "`?phase=<slug>` gives a phase's board (by default the current phase's). "
                           "One page of `limit` entries from `offset` (ranks are the whole board's; "
                           "`total` counts every entry).")
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        query = req.context.query
        resp.media = leaderboard_for(benchmark_id, req.context.principal, query.view, at=query.at,
                                     phase=query.phase, offset=query.offset, limit=query.limit,
                                     rows=self._rows)


class Compare:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._rows = row_store.shared(blobs, config)

    @operation("compareRuns", "Is run a really better than run b? A paired test on the same hidden rows",
               tag="benchmarks", access=TOKEN, query=inputs.CompareQuery, responses={200: outputs.Comparison},
               errors=(403, 404, 409, 413),
               description="McNemar's test (mid-p) for accuracy, a paired bootstrap (fixed seed) for the other "
                           "metrics. Managers: any two succeeded runs, exact, on the private part by default. "
                           "A participant: two of their own runs on the part they are scored on, rounded, with "
                           "discordant counts only when each holds >= min_rows (the plots' k); refused (403) "
                           "while the benchmark is open under settings.ladder.")
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        query = req.context.query
        resp.media = comparisons.compare(benchmark_id, query.a, query.b, req.context.principal, rows=self._rows,
                                         config=self._config, metric=query.metric, view=query.view)


class Features:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @operation("getBenchmarkFeatures", "A short-lived presigned GET of the benchmark's features (never labels)",
               tag="benchmarks", access=TOKEN, responses={200: outputs.FeaturesUrl}, errors=(403, 404, 409, 503),
               description="For participants of a benchmark whose settings.submission_kinds include "
                           "`predictions` (managers: any of theirs). The URL reads the features file only.")
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        resp.media = benchmarks.features_url(benchmark_id, req.context.principal, blobs=self._blobs,
                                             config=self._config)


class Quota:
    @operation("getQuota", "The caller's remaining submissions and when they reset", tag="benchmarks",
               access=TOKEN, responses={200: outputs.QuotaState}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.get_benchmark(benchmark_id, req.context.principal)
        phase = phases.board_phase(benchmark, None, req.context.principal)  # the current phase's quota
        resp.media = quotas.state(benchmark, req.context.principal.owner, phase=phase).to_dict()


class Phases:
    def __init__(self, config: Config, queues: Queues) -> None:
        self._config = config
        self._queues = queues

    @operation("listPhases", "The benchmark's phases in order (those the caller may see) and the current one",
               tag="benchmarks", access=OPTIONAL, responses={200: outputs.PhaseList}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.get_benchmark(benchmark_id, req.context.principal)
        shown = phases.visible_phases(benchmark, req.context.principal)
        now = phases.current(shown)
        resp.media = {"items": [phases.serialize(p, benchmark) for p in shown],
                      "current": now.slug if now is not None else None}

    @operation("createPhase", "Add a phase after the benchmark's last one (admin or owner)", tag="benchmarks",
               access=TOKEN, body=inputs.PhaseIn, responses={201: outputs.Phase}, errors=(403, 404, 409))
    def on_post(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        phase = phases.create_phase(benchmark_id, req.context.body, req.context.principal, config=self._config)
        resp.status = falcon.HTTP_201
        resp.media = phases.serialize(phase, benchmarks.get_benchmark(benchmark_id, req.context.principal))

    @operation("migratePhase", "Re-evaluate each participant's selected runs on the next phase (admin or owner)",
               tag="benchmarks", access=TOKEN, responses={202: outputs.PhaseMigrated},
               errors=(403, 404, 409),
               description="Per participant: their final selections in this phase, else their best run. Each "
                           "becomes a new run of the same submission in the next phase, which a worker evaluates "
                           "on the next phase's dataset with its task and metrics. Idempotent.")
    def on_post_migrate(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str, phase: str) -> None:
        resp.status = falcon.HTTP_202
        resp.media = phases.migrate(benchmark_id, phase, req.context.principal, self._queues)
