"""Where an S3 event becomes a run: record it once, find or create the submission and run, enqueue.

The database work for one object, its pending broker message included (the
outbox), happens in one transaction; the caller answers 2xx once it commits, even
while the broker is down. The message is sent right after the commit when the
broker answers, else by the relay (evaluator.outbox) within about a second of its
return. A notification delivered twice, or retried after a crash, finds the same run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import peewee

from evaluator import outbox, runs
from evaluator.config import Config
from evaluator.events import ObjectCreated
from evaluator.observability import record
from evaluator.storage import layout
from evaluator.storage.models import (
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

    @property
    def result(self) -> str:
        """`new` (a run created, a registration queued), `duplicate` (already taken in) or `ignored`."""
        if self.action == "ignored":
            return "ignored"
        return "new" if self.detail in ("created", "registration queued") else "duplicate"

    @property
    def kind(self) -> str:
        return self.action if self.action in ("run", "dataset") else "other"


@dataclasses.dataclass(frozen=True)
class Queues:
    """The messages intake may send; plain callables so tests and the SQS listener share them."""

    evaluate_run: Callable[[str], None]
    register_dataset: Callable[[str], None]
    rescore_run: Callable[[str], None]
    deliver_webhook: Callable[[str], None] | None = None  # None: this process sends no webhooks (they wait)


def ingest(events: list[ObjectCreated], *, database: peewee.Database | peewee.DatabaseProxy, config: Config,
           queues: Queues) -> list[Outcome]:
    """Turn created objects into runs (or dataset registrations); idempotent per object version."""
    outcomes, pending = [], []
    for event in events:
        with database.atomic():
            outcome, message = _ingest_one(event, config)
            if message is not None:
                pending.append(outbox.add(*message))  # NOTE: committed with the run: a failed send loses nothing
        logger.info("event %s s3://%s/%s -> %s %s", event.source, event.bucket, event.key, outcome.action,
                    outcome.detail)
        outcomes.append(outcome)
    record.intake((o.result, o.kind) for o in outcomes)
    if pending:
        delivery = outbox.deliver(queues, pending)  # after commit, so a worker never misses the row
        if delivery.error:
            logger.warning("Broker unavailable (%s): %d message(s) wait in the outbox for the relay",
                           delivery.error, len(pending) - delivery.sent)
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
    assert dataset is not None  # one of the two, checked above
    return _ingest_dataset(event, dataset)


def _record(event: ObjectCreated) -> None:
    (ObjectEvent.insert(bucket=event.bucket, key=event.key, version=event.dedupe_version, size=event.size,
                        etag=event.etag, sequencer=event.sequencer, source=event.source)
     .on_conflict(conflict_target=[ObjectEvent.bucket, ObjectEvent.key, ObjectEvent.version],
                  update={ObjectEvent.deliveries: ObjectEvent.deliveries + 1})
     .execute())


def _ingest_bundle(event: ObjectCreated, parsed: layout.BundleKey, config: Config) -> tuple[Outcome, Message | None]:
    # NOTE: only a key the API granted becomes a run: a forged or hand-dropped object creates nothing,
    # so no one can start a run in another participant's name or spend her quota.
    submission = Submission.get_or_none(Submission.object_key == event.key)
    if submission is None:
        return Outcome(event.key, "ignored", "no upload grant was issued for this key"), None
    if submission.status == SubmissionStatus.REJECTED.value:
        return Outcome(event.key, "ignored", "this submission was ended (refused, or its token revoked)"), None
    if submission.status == SubmissionStatus.AWAITING_UPLOAD.value:
        (Submission.update(status=SubmissionStatus.UPLOADED.value, size=event.size, etag=event.etag,
                           uploaded_at=utcnow(), upload_id=None)
         .where((Submission.id == submission.id)
                & (Submission.status == SubmissionStatus.AWAITING_UPLOAD.value)).execute())
        submission = Submission.get_by_id(submission.id)
    elif submission.etag and event.etag and event.etag != submission.etag:
        # The first upload is pinned (the worker downloads it by ETag): a later one starts and changes nothing.
        return Outcome(event.key, "ignored", "a later upload to a key already uploaded; the first is evaluated"), None
    run, created = runs.create_or_get_run(submission)
    # The worker refuses (and deletes) a bundle over the limit before it downloads a byte of it.
    # A queued run is (re-)enqueued on every delivery: a crash between commit and send loses nothing,
    # and a duplicate message is a no-op for a run another worker has claimed.
    message = ("evaluate_run", str(run.id)) if run.status == RunStatus.QUEUED.value else None
    return Outcome(event.key, "run", "created" if created else f"existing ({run.status})", run_id=str(run.id)), message


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
