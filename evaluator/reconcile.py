"""The reconciler: nothing is lost when a notification or a message is.

Finds uploaded bundles without a run (a lost notification), queued runs that
sat too long (a lost message), active runs whose worker stopped renewing its
lease (a dead worker), and uploaded datasets still pending; re-enqueues each.

Lost notifications are found two ways: `check_pending_uploads` HEADs the key of
each submission still awaiting its upload (O(pending); the relay runs it every
few seconds), and a rare full pass lists every key under bundles/ (O(all uploads
ever)) for what the quick check cannot see, e.g. a grant that expired long ago.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

import peewee

from evaluator.config import Config
from evaluator.events import ObjectCreated
from evaluator.intake import Queues, ingest
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import database, rows
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


PENDING_LIMIT = 1000  # submissions HEADed per quick pass, newest first; the full pass covers the rest
_last_full_pass: float | None = None  # monotonic time of this process's last full listing


def reconcile(*, config: Config, blobs: BlobStore, queues: Queues, now: datetime.datetime | None = None,
              full: bool | None = None) -> Report:
    """One pass; `full` lists the whole bundles/ prefix (None: when this process has not for
    reconcile_full_interval_s, so a one-shot `evaluator reconcile` always does)."""
    global _last_full_pass
    now = now or utcnow()
    report = Report()
    report.bundles_without_run.extend(check_pending_uploads(config=config, blobs=blobs, queues=queues, now=now))
    if full is None:
        full = _last_full_pass is None or time.monotonic() - _last_full_pass >= config.reconcile_full_interval_s
    if full:
        _last_full_pass = time.monotonic()
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


def check_pending_uploads(*, config: Config, blobs: BlobStore, queues: Queues,
                          now: datetime.datetime | None = None) -> list[str]:
    """HEAD the key of each submission awaiting its upload; ingest those that arrived; returns their keys.

    A grant that expired more than upload_expiry_s ago is left to the full pass
    (a multipart upload may still be completed a while after its grant expired).
    """
    now = now or utcnow()
    horizon = now - datetime.timedelta(seconds=config.upload_expiry_s)
    pending = (Submission.select(Submission.bucket, Submission.object_key)
               .where((Submission.status == SubmissionStatus.AWAITING_UPLOAD.value)
                      & (Submission.expires_at.is_null() | (Submission.expires_at > horizon)))
               .order_by(Submission.created_at.desc()).limit(PENDING_LIMIT).tuples())
    arrived = []
    for bucket, key in rows(pending):
        head = blobs.head(bucket, key)
        if head is not None:
            arrived.append(ObjectCreated(bucket=bucket, key=key, size=head["size"], etag=head["etag"],
                                         version=head["version"], sequencer=None, source="upload-check"))
    found = [o.key for o in ingest(arrived, database=database, config=config, queues=queues) if o.run_id]
    if found:
        logger.warning("Started %d run(s) whose upload notification never arrived: %s", len(found),
                       ", ".join(found[:10]))
    return found


def _adopt_lost_uploads(config: Config, blobs: BlobStore, queues: Queues, report: Report) -> None:
    """Ingest granted uploads that have no run; delete uploads of ended submissions (refused, revoked).

    Objects no grant was issued for are left alone: they start nothing (see intake).
    """
    without_run = (Submission.select(Submission.object_key, Submission.status)
                   .join(Run, peewee.JOIN.LEFT_OUTER).where(Run.id.is_null()).tuples())
    granted = {key: status for key, status in rows(without_run)}
    ended = Submission.select(Submission.object_key).where(Submission.status == SubmissionStatus.REJECTED.value)
    granted.update({key: SubmissionStatus.REJECTED.value for (key,) in rows(ended.tuples())})
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
    for run in Run.select(Run.id, Run.status, Run.updated_at, Run.lease_owner, Run.lease_expires_at).where(
            stale_queued | dead_worker):
        if run.status == RunStatus.QUEUED.value:
            logger.warning("Run %s is stuck queued (%.0fs without a change); sending its message again.",
                           run.id, (now - run.updated_at).total_seconds())
        else:
            logger.warning("Run %s is %s but its worker %s stopped renewing its lease (%s); sending its message "
                           "again for a takeover.", run.id, run.status, run.lease_owner,
                           f"expired {(now - run.lease_expires_at).total_seconds():.0f}s ago"
                           if run.lease_expires_at else "no lease")
        Run.update(updated_at=now).where(Run.id == run.id).execute()  # one nudge per deadline
        queues.evaluate_run(str(run.id))
        report.requeued_runs.append(str(run.id))
