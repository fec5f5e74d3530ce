"""create_app(): wire resources to collaborators (no I/O); get_app(): the gunicorn root."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import falcon
import peewee

from evaluator.api import (
    benchmarks,
    datasets,
    docs,
    errors,
    events,
    health,
    openapi,
    runs,
    submissions,
    teams,
    tokens,
    webhooks,
)
from evaluator.api.middleware import (
    BearerAuth,
    BodyLimit,
    DatabaseConnection,
    RequestId,
    RequestMetrics,
    SafeParameters,
    SessionAuth,
)
from evaluator.config import Config
from evaluator.intake import Queues
from evaluator.storage.blobs import BlobStore
from evaluator.web import pages


def create_app(config: Config, *, database: peewee.Database, blobs: BlobStore, queues: Queues,
               health_checks: Mapping[str, health.HealthCheck], advisories: Mapping[str, health.Advisory] | None = None,
               metric_collectors: Sequence[Any] = ()) -> falcon.App:
    """Wire resources to their collaborators; no I/O happens here.

    `advisories` make /health `degraded` (no live worker); `metric_collectors` add scrape-time families
    (the broker's) to the recorded samples and the database's run gauges.
    """
    from evaluator.observability import scrape

    # falcon's middleware types are protocols per hook: a list of several kinds is typed Any
    middleware: list[Any] = [RequestId(), RequestMetrics(), BodyLimit(config.api_max_body_bytes), SafeParameters(),
                             DatabaseConnection(database), BearerAuth(), SessionAuth()]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.register(app)

    app.add_route("/health", health.Health(health_checks, advisories))
    app.add_route("/metrics", health.Metrics([scrape.recorded(config), scrape.RunGauges(database),
                                              *metric_collectors]))
    app.add_route("/openapi.json", openapi.OpenApi(app))
    docs_page = docs.Docs(app)
    app.add_route("/docs", docs_page)
    app.add_route("/docs/{asset}", docs_page, suffix="asset")

    app.add_route("/v1/datasets", datasets.DatasetCollection(config, blobs))
    app.add_route("/v1/datasets/{dataset_id}", datasets.DatasetItem())
    app.add_route("/v1/benchmarks", benchmarks.BenchmarkCollection(config))
    benchmark_item = benchmarks.BenchmarkItem(queues)
    app.add_route("/v1/benchmarks/{benchmark_id}", benchmark_item)
    app.add_route("/v1/benchmarks/{benchmark_id}/rescore", benchmark_item, suffix="rescore")
    app.add_route("/v1/benchmarks/{benchmark_id}/submissions", submissions.BenchmarkSubmissions(config, blobs))
    app.add_route("/v1/benchmarks/{benchmark_id}/leaderboard", benchmarks.Leaderboard(config, blobs))
    app.add_route("/v1/benchmarks/{benchmark_id}/compare", benchmarks.Compare(config, blobs))
    app.add_route("/v1/benchmarks/{benchmark_id}/quota", benchmarks.Quota())
    phase_routes = benchmarks.Phases(config, queues)
    app.add_route("/v1/benchmarks/{benchmark_id}/phases", phase_routes)
    app.add_route("/v1/benchmarks/{benchmark_id}/phases/{phase}/migrate", phase_routes, suffix="migrate")
    app.add_route("/v1/benchmarks/{benchmark_id}/features", benchmarks.Features(config, blobs))
    app.add_route("/v1/benchmarks/{benchmark_id}/teams", teams.BenchmarkTeams())
    team_item = teams.TeamItem()
    app.add_route("/v1/teams/{team_id}", team_item)
    app.add_route("/v1/teams/{team_id}/invitations", team_item, suffix="invitations")
    app.add_route("/v1/teams/{team_id}/invitations/accept", team_item, suffix="accept")
    app.add_route("/v1/teams/{team_id}/leave", team_item, suffix="leave")
    app.add_route("/v1/teams/{team_id}/members/{user}", team_item, suffix="member")
    submission_item = submissions.SubmissionItem(blobs)
    app.add_route("/v1/submissions/{submission_id}", submission_item)
    app.add_route("/v1/submissions/{submission_id}/complete", submission_item, suffix="complete")
    app.add_route("/v1/runs", runs.RunCollection())
    run_item = runs.RunItem(config, blobs)
    app.add_route("/v1/runs/{run_id}", run_item)
    app.add_route("/v1/runs/{run_id}/logs", run_item, suffix="logs")
    app.add_route("/v1/runs/{run_id}/cancel", run_item, suffix="cancel")
    app.add_route("/v1/runs/{run_id}/predictions", run_item, suffix="predictions")
    app.add_route("/v1/runs/{run_id}/plots", run_item, suffix="plots")
    app.add_route("/v1/runs/{run_id}/plots/{name}", run_item, suffix="plot")
    app.add_route("/v1/runs/{run_id}/final", run_item, suffix="final")
    app.add_route("/v1/runs/{run_id}/events", runs.RunEvents(config, runs.StreamSlots(config.sse_max_streams)))
    app.add_route("/v1/webhooks", webhooks.WebhookCollection(config))
    webhook_item = webhooks.WebhookItem()
    app.add_route("/v1/webhooks/{webhook_id}", webhook_item)
    app.add_route("/v1/webhooks/{webhook_id}/deliveries", webhook_item, suffix="deliveries")
    app.add_route("/v1/events/s3", events.S3Events(config, database, queues))
    app.add_route("/v1/tokens", tokens.TokenCollection())
    app.add_route("/v1/tokens/{token_id}", tokens.TokenItem(blobs))
    pages.register(app, config, blobs, queues)
    return app


def get_app(config: Config | None = None) -> falcon.App:
    """Build the real collaborators from the environment: gunicorn's entry point."""
    from evaluator.logs import configure_logging
    from evaluator.worker.broker import setup

    config = config or Config.from_env()
    config.check_events_token()  # http/gunicorn.conf.py exits first with one line; this covers other servers
    configure_logging(config)
    broker = setup(config)  # NOTE: sets the broker before the actors are imported (STYLE R9)
    app = build_app(config)
    from evaluator.worker.relay import build_relay

    # NOTE: gunicorn calls get_app() in each worker after the fork (no preload_app), so the thread lives there.
    build_relay(config, broker).start()
    return app


def build_app(config: Config) -> falcon.App:
    """Wire the real database, object store and the already configured broker."""
    import dramatiq

    from evaluator.observability.heartbeats import heartbeats_of, no_worker_reason
    from evaluator.observability.scrape import BrokerGauges, canonical_queues
    from evaluator.storage.db import init_database, ping
    from evaluator.worker import actors

    database = init_database(config.database_url)
    blobs = BlobStore.from_config(config)
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)  # None: the in-process broker of `evaluator dev`
    checks = {
        "database": lambda: ping(database),
        "broker": lambda: client.ping() if client is not None else None,
        "object_store": lambda: blobs.ping(config.bundles_bucket),
    }
    beats = heartbeats_of(broker, config.broker_namespace)
    return create_app(config, database=database, blobs=blobs, queues=actors.queues(), health_checks=checks,
                      advisories={"workers": lambda: no_worker_reason(beats, config.worker_stale_s)},
                      metric_collectors=[BrokerGauges(broker, config.broker_namespace,
                                                      lambda: canonical_queues(broker), beats)])
