"""Where an S3 event becomes a run: record it once, find or create the submission and run, enqueue.

The database work for one object happens in one transaction; the messages are
sent only after it commits, and the caller answers 2xx only after that. A
notification delivered twice, or retried after a crash, finds the same run.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Callable

import peewee

from evaluator import runs
from evaluator.config import Config
from evaluator.events import ObjectCreated
from evaluator.storage import layout
from evaluator.storage.models import (
    Benchmark,
    Dataset,
    DatasetStatus,
    ObjectEvent,
    RunStatus,
    Submission,
    SubmissionStatus,
    utcnow,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Outcome:
    """What intake did with one object: `run`, `dataset`, or `ignored` (with why)."""

    key: str
    action: str
    detail: str = ""
    run_id: str | None = None
    dataset_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Queues:
    """The messages intake may send; plain callables so tests and the SQS listener share them."""

    evaluate_run: Callable[[str], None]
    register_dataset: Callable[[str], None]
    rescore_run: Callable[[str], None]


def ingest(events: list[ObjectCreated], *, database: peewee.Database, config: Config, queues: Queues) -> list[Outcome]:
    """Turn created objects into runs (or dataset registrations); idempotent per object version."""
    outcomes = []
    for event in events:
        with database.atomic():
            outcome, message = _ingest_one(event, config)
        if message is not None:
            kind, ident = message
            getattr(queues, kind)(ident)  # NOTE: after commit, so a worker never misses the row
        logger.info("event %s s3://%s/%s -> %s %s", event.source, event.bucket, event.key, outcome.action,
                    outcome.detail)
        outcomes.append(outcome)
    return outcomes


Message = tuple[str, str]  # (name of a Queues field, id)


def _ingest_one(event: ObjectCreated, config: Config) -> tuple[Outcome, Message | None]:
    if event.key.startswith(layout.RESULTS_PREFIX):
        return Outcome(event.key, "ignored", "written by the platform"), None
    bundle = layout.parse_bundle_key(event.key) if event.bucket == config.bundles_bucket else None
    dataset = layout.parse_dataset_key(event.key) if event.bucket == config.datasets_bucket else None
    if bundle is None and dataset is None:
        return Outcome(event.key, "ignored", "not a bundle or dataset key of ours"), None
    _record(event)
    if bundle is not None:
        return _ingest_bundle(event, bundle, config)
    return _ingest_dataset(event, dataset)


def _record(event: ObjectCreated) -> None:
    (ObjectEvent.insert(bucket=event.bucket, key=event.key, version=event.dedupe_version, size=event.size,
                        etag=event.etag, sequencer=event.sequencer, source=event.source)
     .on_conflict(conflict_target=[ObjectEvent.bucket, ObjectEvent.key, ObjectEvent.version],
                  update={ObjectEvent.deliveries: ObjectEvent.deliveries + 1})
     .execute())


def _ingest_bundle(event: ObjectCreated, parsed: layout.BundleKey, config: Config) -> tuple[Outcome, Message | None]:
    submission = Submission.get_or_none(Submission.object_key == event.key)
    if submission is None:
        submission = _adopt(event, parsed, config)
        if submission is None:
            return Outcome(event.key, "ignored", f"no benchmark {parsed.benchmark}"), None
    if submission.status == SubmissionStatus.AWAITING_UPLOAD.value:
        (Submission.update(status=SubmissionStatus.UPLOADED.value, size=event.size, etag=event.etag,
                           uploaded_at=utcnow(), upload_id=None)
         .where(Submission.id == submission.id).execute())
    run, created = runs.create_or_get_run(submission)
    too_big = _over_limit(event, submission)
    if too_big and run.status == RunStatus.QUEUED.value:
        runs.finish(str(run.id), status=RunStatus.FAILED.value, failure={"code": "bundle_invalid", "message": too_big})
        return Outcome(event.key, "run", "refused: " + too_big, run_id=str(run.id)), None
    # A queued run is (re-)enqueued on every delivery: a crash between commit and send loses nothing,
    # and a duplicate message is a no-op for a run another worker has claimed.
    message = ("evaluate_run", str(run.id)) if run.status == RunStatus.QUEUED.value else None
    return Outcome(event.key, "run", "created" if created else f"existing ({run.status})", run_id=str(run.id)), message


def _over_limit(event: ObjectCreated, submission: Submission) -> str | None:
    limit = int(Benchmark.get_by_id(submission.benchmark_id).limits.get("max_bundle_bytes", 0) or 0)
    if limit and event.size is not None and event.size > limit:
        return f"the uploaded bundle has {event.size} bytes, over this benchmark's limit of {limit}"
    return None


def _adopt(event: ObjectCreated, parsed: layout.BundleKey, config: Config) -> Submission | None:
    """Create a submission for a bundle dropped in by hand (e.g. through the MinIO console)."""
    if Benchmark.get_or_none(Benchmark.id == parsed.benchmark) is None:
        return None
    try:
        submission_id = uuid.UUID(parsed.stem)
    except ValueError:
        submission_id = uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{event.bucket}/{event.key}")
    (Submission.insert(id=submission_id, benchmark=parsed.benchmark, owner=parsed.owner, name=parsed.name,
                       version=parsed.version, bucket=event.bucket, object_key=event.key,
                       filename=event.key.rsplit("/", 1)[-1], upload_method="external")
     .on_conflict_ignore().execute())
    return Submission.get(Submission.object_key == event.key)


def _ingest_dataset(event: ObjectCreated, parsed: layout.DatasetKey) -> tuple[Outcome, Message | None]:
    dataset = Dataset.get_or_none((Dataset.name == parsed.name) & (Dataset.version == parsed.version))
    if dataset is None:
        return Outcome(event.key, "ignored", f"no dataset {parsed.name}:{parsed.version} declared"), None
    if event.key not in (dataset.features_key, dataset.labels_key):
        return Outcome(event.key, "ignored", "not this dataset's declared file"), None
    if dataset.status != DatasetStatus.PENDING.value:
        return Outcome(event.key, "dataset", f"already {dataset.status}", dataset_id=str(dataset.id)), None
    return Outcome(event.key, "dataset", "registration queued", dataset_id=str(dataset.id)), (
        "register_dataset", str(dataset.id))
