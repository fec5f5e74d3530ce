"""Resources for /v1/benchmarks: parse, call evaluator.benchmarks, shape the response."""

from __future__ import annotations

import falcon

from evaluator import benchmarks, competition, leaderboard, quotas
from evaluator.api.hooks import authenticated, json_body, optional_auth, publisher
from evaluator.config import Config
from evaluator.intake import Queues


class BenchmarkCollection:
    def __init__(self, config: Config) -> None:
        self._config = config

    @falcon.before(optional_auth)  # public benchmarks are listed to anyone
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [benchmarks.serialize(b) for b in benchmarks.visible_to(req.context.principal)]}

    @falcon.before(publisher)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        benchmark = benchmarks.create_benchmark(req.context.body, req.context.principal, config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/benchmarks/{benchmark.id}"
        resp.media = benchmarks.serialize(benchmark)


class BenchmarkItem:
    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    @falcon.before(optional_auth)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        resp.media = benchmarks.serialize(benchmarks.get_benchmark(benchmark_id, req.context.principal))

    @falcon.before(authenticated)
    @falcon.before(json_body)
    def on_patch(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.update_benchmark(benchmark_id, req.context.body, req.context.principal)
        resp.media = benchmarks.serialize(benchmark)

    @falcon.before(authenticated)
    def on_post_rescore(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        run_ids = benchmarks.rescore_benchmark(benchmark_id, req.context.principal, self._queues.rescore_run)
        resp.status = falcon.HTTP_202
        resp.media = {"queued": len(run_ids), "runs": run_ids}


class Leaderboard:
    @falcon.before(optional_auth)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.get_benchmark(benchmark_id, req.context.principal)
        closed = competition.is_closed(benchmark)
        # Managers may preview the private ranking before close (?view=private); everyone sees it after.
        manager = competition.manages(benchmark, req.context.principal)
        wants_private = req.get_param("view") == "private" and manager
        resp.media = leaderboard.build(benchmark, private=closed or wants_private, exact=manager)


class Quota:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.get_benchmark(benchmark_id, req.context.principal)
        resp.media = quotas.state(benchmark, req.context.principal.owner).to_dict()
