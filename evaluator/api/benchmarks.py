"""Resources for /v1/benchmarks: parse, call evaluator.benchmarks, shape the response."""

from __future__ import annotations

import falcon

from evaluator import benchmarks, leaderboard, quotas
from evaluator.api.hooks import admin_only, authenticated, json_body
from evaluator.config import Config


class BenchmarkCollection:
    def __init__(self, config: Config) -> None:
        self._config = config

    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [benchmarks.serialize(b) for b in benchmarks.visible_to(req.context.principal)]}

    @falcon.before(admin_only)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        benchmark = benchmarks.create_benchmark(req.context.body, req.context.principal, config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/benchmarks/{benchmark.id}"
        resp.media = benchmarks.serialize(benchmark)


class BenchmarkItem:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        resp.media = benchmarks.serialize(benchmarks.get_benchmark(benchmark_id, req.context.principal))


class Leaderboard:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        resp.media = leaderboard.build(benchmarks.get_benchmark(benchmark_id, req.context.principal))


class Quota:
    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        benchmark = benchmarks.get_benchmark(benchmark_id, req.context.principal)
        resp.media = quotas.state(benchmark, req.context.principal.owner).to_dict()
