"""Benchmarks: a dataset + task + metrics + limits; created by admins, read by everyone allowed."""

from __future__ import annotations

from typing import Any

import peewee

from evaluator import competition, fields, phases, quotas, scoring
from evaluator.config import Config
from evaluator.datasets import dataset_field, may_use, require_ready
from evaluator.errors import Conflict, Forbidden, NotFound, ValidationFailed
from evaluator.sandbox.frameworks import FRAMEWORKS
from evaluator.settings import settings_of
from evaluator.storage.models import Benchmark, BenchmarkRevision, isoformat, utcnow
from evaluator.tokens import Principal

TASKS = ("classification", "regression")
VISIBILITIES = ("public", "participants", "private")


def default_limits(config: Config) -> dict:
    return {
        "timeout_s": config.sandbox_timeout_s,
        "memory": config.sandbox_memory,
        "cpus": config.sandbox_cpus,
        "pids": config.sandbox_pids,
        "max_bundle_bytes": config.max_bundle_bytes,
        "gpus": config.sandbox_gpus,
    }


def parse_limits(body: dict, config: Config) -> dict:
    raw = fields.mapping(body, "limits", {})
    defaults = default_limits(config)
    limits: dict[str, Any] = {
        "timeout_s": fields.integer(raw, "timeout_s", defaults["timeout_s"], minimum=1, maximum=24 * 3600),
        "memory": fields.text(raw, "memory", defaults["memory"], max_length=20),
        "cpus": fields.number(raw, "cpus", defaults["cpus"]),
        "pids": fields.integer(raw, "pids", defaults["pids"], minimum=16),
        "max_bundle_bytes": fields.integer(raw, "max_bundle_bytes", defaults["max_bundle_bytes"], minimum=1),
        "gpus": fields.integer(raw, "gpus", defaults["gpus"], minimum=0, maximum=16),
    }
    if not limits["memory"][:-1].isdigit() or limits["memory"][-1].lower() not in "kmg":
        raise ValidationFailed("'limits.memory' must look like 512m or 2g", field="limits.memory")
    if raw.get("runtime"):  # a Docker runtime, e.g. runsc (gVisor): its runs go to the hosts that have it
        limits["runtime"] = fields.slug(raw, "runtime")
    return limits


def create_benchmark(body: dict, principal: Principal, *, config: Config) -> Benchmark:
    """Validate a benchmark definition and store it."""
    benchmark_id = fields.slug(body, "id")
    task = fields.choice(body, "task", TASKS)
    metric_names = scoring.metric_names(task)
    primary = fields.choice(body, "primary_metric", metric_names, scoring.default_primary_metric(task))
    metrics = fields.string_list(body, "metrics", list(metric_names), allowed=metric_names)
    dataset = require_ready(dataset_field(body, principal))  # an owner attaches only her own datasets
    if Benchmark.get_or_none(Benchmark.id == benchmark_id):
        raise Conflict(f"benchmark {benchmark_id} already exists")
    with Benchmark._meta.database.atomic():
        benchmark = Benchmark.create(
            id=benchmark_id,
            title=fields.text(body, "title", benchmark_id),
            dataset=dataset,
            task=task,
            primary_metric=primary,
            direction=scoring.direction(primary),
            metrics=metrics,
            limits=parse_limits(body, config),
            allowed_frameworks=fields.string_list(body, "allowed_frameworks", list(FRAMEWORKS), allowed=FRAMEWORKS),
            quota=quotas.parse_quota(body),
            visibility=fields.choice(body, "visibility", VISIBILITIES, "public"),
            settings=competition.parse_settings(body, metric_names, primary),
            owner=principal.owner,
        )
        if body.get("phases"):  # ordered: dev, then final, ...; none: one implicit phase, as before
            phases.add_phases(benchmark, body["phases"], principal, config=config)
        record_revision(benchmark)
    return benchmark


def record_revision(benchmark: Benchmark) -> None:
    """Keep the rules now in force (primary metric, metrics, settings), so `?at=` ranks with past ones."""
    BenchmarkRevision.create(benchmark=benchmark.id, primary_metric=benchmark.primary_metric,
                             metrics=benchmark.metrics, settings=benchmark.settings, changed_at=utcnow())


def update_benchmark(benchmark_id: str, body: dict, principal: Principal) -> Benchmark:
    """Change the scoring of a benchmark (metrics, primary metric, dataset, settings); managers only."""
    benchmark = get_benchmark(benchmark_id, principal)
    if not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark_id} may change it")
    names = scoring.metric_names(benchmark.task)
    primary = fields.choice(body, "primary_metric", names, benchmark.primary_metric)
    changes: dict[peewee.Field, Any] = {
        Benchmark.primary_metric: primary,
        Benchmark.direction: scoring.direction(primary),
        Benchmark.metrics: fields.string_list(body, "metrics", benchmark.metrics, allowed=names),
    }
    if "dataset" in body:
        changes[Benchmark.dataset] = require_ready(dataset_field(body, principal))
    if "settings" in body:
        changes[Benchmark.settings] = competition.parse_settings(body, names, primary)
    if "title" in body:
        changes[Benchmark.title] = fields.text(body, "title")
    with Benchmark._meta.database.atomic():
        Benchmark.update(changes).where(Benchmark.id == benchmark.id).execute()
        benchmark = Benchmark.get_by_id(benchmark.id)
        record_revision(benchmark)
    return benchmark


def rescore_benchmark(benchmark_id: str, principal: Principal, enqueue) -> list[str]:
    """Queue a re-score of every succeeded run from its stored predictions; managers only."""
    from evaluator.rescoring import runs_to_rescore

    benchmark = get_benchmark(benchmark_id, principal)
    if not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark_id} may re-score it")
    if not may_use(benchmark.dataset, principal):
        # NOTE: a re-score reads the labels of the benchmark's dataset: the same rule as attaching it.
        raise Forbidden(f"benchmark {benchmark_id} is on a dataset you did not register; an admin may re-score it")
    run_ids = runs_to_rescore(benchmark)
    for run_id in run_ids:
        enqueue(run_id)
    return run_ids


def visible_to(principal: Principal | None):
    """Return the query of benchmarks a caller may see: anonymous callers see public ones only."""
    query = Benchmark.select().order_by(Benchmark.created_at)
    if principal is None:
        return query.where(Benchmark.visibility == "public")
    if principal.is_admin:
        return query
    return query.where((Benchmark.visibility != "private") | (Benchmark.owner == principal.owner))


def get_benchmark(benchmark_id: str, principal: Principal | None) -> Benchmark:
    """Return a benchmark the principal may see; NotFound otherwise (existence does not leak)."""
    row = visible_to(principal).where(Benchmark.id == benchmark_id).first()
    if row is None:
        raise NotFound(f"benchmark {benchmark_id} not found")
    return row


FEATURES_URL_S = 300


def features_url(benchmark_id: str, principal: Principal, *, blobs, config: Config) -> dict:
    """A short-lived presigned GET of a benchmark's features file, never of its labels.

    Participants get it for benchmarks that take prediction files (they predict on these rows);
    managers for any of theirs. Registration refused a features file holding the target column.
    """
    benchmark = get_benchmark(benchmark_id, principal)
    if not competition.manages(benchmark, principal) and not settings_of(benchmark).accepts("predictions"):
        raise Forbidden(f"benchmark {benchmark_id} takes model bundles only; its features are not published")
    dataset = require_ready(benchmark.dataset)
    if blobs.head(config.datasets_bucket, dataset.features_key) is None:
        raise NotFound(f"the features of benchmark {benchmark_id} are gone from the store; ask its organiser")
    return {"url": blobs.presign_get(config.datasets_bucket, dataset.features_key, FEATURES_URL_S),
            "expires_in": FEATURES_URL_S, "format": dataset.file_format, "row_id_column": dataset.row_id_column,
            "rows": dataset.row_count, "sha256": dataset.features_sha256}


def serialize(benchmark: Benchmark) -> dict:
    return {
        "id": benchmark.id,
        "title": benchmark.title,
        "dataset": benchmark.dataset.ref,
        "dataset_id": str(benchmark.dataset_id),
        "task": benchmark.task,
        "primary_metric": benchmark.primary_metric,
        "direction": benchmark.direction,
        "metrics": benchmark.metrics,
        "limits": benchmark.limits,
        "allowed_frameworks": benchmark.allowed_frameworks,
        "quota": benchmark.quota,
        "visibility": benchmark.visibility,
        "settings": competition.settings_of(benchmark),
        "closed": competition.is_closed(benchmark),
        "owner": benchmark.owner,
        "created_at": isoformat(benchmark.created_at),
    }
