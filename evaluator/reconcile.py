"""The reconciler: nothing is lost when a notification or a message is.

Finds uploaded bundles without a run (a lost notification), queued runs that
sat too long (a lost message), active runs whose worker stopped renewing its
lease (a dead worker), and uploaded datasets still pending; re-enqueues each.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

import peewee

from evaluator.config import Config
from evaluator.events import ObjectCreated
from evaluator.intake import Queues, ingest
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import database
from evaluator.storage.models import (
    ACTIVE_RUN_STATUSES,
    Dataset,
    DatasetStatus,
    Run,
    RunStatus,
    Submission,
    SubmissionStatus,
    utcnow,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Report:
    bundles_without_run: list[str] = dataclasses.field(default_factory=list)
    requeued_runs: list[str] = dataclasses.field(default_factory=list)
    datasets: list[str] = dataclasses.field(default_factory=list)
    deleted_uploads: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def reconcile(*, config: Config, blobs: BlobStore, queues: Queues, now: datetime.datetime | None = None) -> Report:
    now = now or utcnow()
    report = Report()
    _adopt_lost_uploads(config, blobs, queues, report)
    _requeue_stale_runs(config, queues, now, report)
    for dataset in Dataset.select().where(Dataset.status == DatasetStatus.PENDING.value):
        if (blobs.head(config.datasets_bucket, dataset.features_key)
                and blobs.head(config.datasets_bucket, dataset.labels_key)):
            queues.register_dataset(str(dataset.id))
            report.datasets.append(str(dataset.id))
    if report.bundles_without_run or report.requeued_runs or report.datasets or report.deleted_uploads:
        logger.info("Reconciled: %s", report.to_dict())
    return report


def _adopt_lost_uploads(config: Config, blobs: BlobStore, queues: Queues, report: Report) -> None:
    """Ingest granted uploads that have no run; delete uploads of ended submissions (refused, revoked).

    Objects no grant was issued for are left alone: they start nothing (see intake).
    """
    without_run = (Submission.select(Submission.object_key, Submission.status)
                   .join(Run, peewee.JOIN.LEFT_OUTER).where(Run.id.is_null()).tuples())
    granted = {key: status for key, status in without_run}
    ended = Submission.select(Submission.object_key).where(Submission.status == SubmissionStatus.REJECTED.value)
    granted.update({key: SubmissionStatus.REJECTED.value for (key,) in ended.tuples()})
    lost = []
    for item in blobs.list_keys(config.bundles_bucket, layout.BUNDLES_PREFIX):
        status = granted.get(item["key"])
        if status == SubmissionStatus.REJECTED.value:
            blobs.delete(config.bundles_bucket, item["key"])
            report.deleted_uploads.append(item["key"])
        elif status is not None:
            lost.append(ObjectCreated(bucket=config.bundles_bucket, key=item["key"], size=item["size"],
                                      etag=item["etag"], version=None, sequencer=None, source="reconcile"))
    for outcome in ingest(lost, database=database, config=config, queues=queues):
        if outcome.run_id:
            report.bundles_without_run.append(outcome.key)


def _requeue_stale_runs(config: Config, queues: Queues, now: datetime.datetime, report: Report) -> None:
    queued_before = now - datetime.timedelta(seconds=config.reconcile_queued_after_s)
    stale_queued = (Run.status == RunStatus.QUEUED.value) & (Run.updated_at < queued_before)
    dead_worker = Run.status.in_([s.value for s in ACTIVE_RUN_STATUSES]) & (
        Run.lease_expires_at.is_null() | (Run.lease_expires_at < now))
    for run in Run.select(Run.id).where(stale_queued | dead_worker):
        Run.update(updated_at=now).where(Run.id == run.id).execute()  # one nudge per deadline
        queues.evaluate_run(str(run.id))
        report.requeued_runs.append(str(run.id))
