"""Submissions: a row per bundle and the presigned grant that uploads it straight to the store."""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import uuid
from pathlib import Path
from typing import Any

from evaluator import competition, entrants, fields, phases, quotas
from evaluator.benchmarks import get_benchmark
from evaluator.config import Config
from evaluator.errors import (
    BundleMissing,
    Conflict,
    Forbidden,
    KindNotAccepted,
    NotFound,
    ObjectMissing,
    PayloadTooLarge,
    ValidationFailed,
)
from evaluator.settings import limits_of
from evaluator.settings import settings_of as limits_settings
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore, ObjectChanged
from evaluator.storage.models import Submission, SubmissionStatus, isoformat, utcnow
from evaluator.tokens import Principal

logger = logging.getLogger(__name__)

UPLOAD_METHODS = ("put", "post", "multipart")
MAX_PARTS = 10_000
CONTENT_TYPES = {".tar.gz": "application/gzip", ".tgz": "application/gzip", ".zip": "application/zip",
                 ".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}
KIND_WORDS = {"bundle": "model bundles (.tar.gz, .tgz, .zip)", "predictions": "prediction files (.csv, .parquet)"}


def create_submission(benchmark_id: str, body: dict, principal: Principal, *, blobs: BlobStore,
                      config: Config) -> tuple[Submission, dict]:
    """Record a submission awaiting upload and grant its upload; refuse oversize before any URL."""
    benchmark = get_benchmark(benchmark_id, principal)
    name = fields.slug(body, "name")
    version = fields.slug(body, "version", "1")
    filename = fields.text(body, "filename", "bundle.tar.gz", max_length=255)
    found = layout.submission_extension(filename)
    if found is None:
        raise ValidationFailed(f"'filename' must end with one of "
                               f"{list(layout.BUNDLE_EXTENSIONS + layout.PREDICTIONS_EXTENSIONS)}", field="filename")
    kind, ext = found
    check_kind(benchmark, kind)
    baseline = bool(body.get("baseline", False))
    if baseline and not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark.id} may submit a baseline")
    if not baseline and principal.role == "owner" and not principal.is_admin:
        raise Forbidden("an owner token submits to its own benchmarks as baselines only ('baseline': true)")
    size = fields.integer(body, "size", None, minimum=1)
    # None: a benchmark without phases
    phase = phases.submission_phase(benchmark, body.get("phase"), principal, baseline=baseline)
    max_bytes = limits_of(phases.effective(benchmark, phase)).bundle_bytes(config.max_bundle_bytes)
    if size is not None and size > max_bytes:
        raise PayloadTooLarge(f"{'bundle' if kind == 'bundle' else 'predictions file'} of {size} bytes is over "
                              f"this benchmark's limit of {max_bytes} bytes")
    competition.check_open(benchmark)
    if not baseline:  # NOTE: a manager's reference entries spend no one's quota
        # NOTE: before any URL is issued (checked again under the lock)
        quotas.check(benchmark, principal.owner, phase=phase)
    default_method = "multipart" if size and size > config.multipart_threshold_bytes else "post"
    method = fields.choice(body, "method", UPLOAD_METHODS, default_method)
    if method in ("put", "multipart") and size is None:
        # NOTE: the length is signed into the URL; the store refuses any other (a POST policy caps it instead).
        raise ValidationFailed(f"'size' (the bundle's length in bytes) is required for a {method} upload",
                               field="size")

    submission_id = uuid.uuid4()
    key = layout.bundle_key(benchmark.id, principal.owner, name, version, submission_id, ext)
    expires_at = utcnow() + datetime.timedelta(seconds=config.upload_expiry_s)
    submission = Submission(
        id=submission_id, benchmark=benchmark, owner=principal.owner, name=name, version=version,
        bucket=config.bundles_bucket, object_key=key, filename=filename, declared_size=size,
        upload_method=method, expires_at=expires_at, token_id=principal.token_id, kind=kind, baseline=baseline,
        phase=phase,
    )
    # NOTE: concurrent requests of one participant queue here; a baseline spends no quota
    with contextlib.nullcontext() if baseline else quotas.reserved(benchmark, principal.owner, phase=phase):
        # The team the owner is in now: the submission stays that team's, whoever leaves it later.
        submission.team = None if baseline else entrants.team_of(benchmark.id, principal.owner)
        grant = _grant(submission, max_bytes, content_type=CONTENT_TYPES[ext], blobs=blobs, config=config)
        submission.save(force_insert=True)
    return submission, grant


def check_kind(benchmark, kind: str) -> None:
    """Refuse a kind of submission the benchmark does not take, saying what it does take."""
    accepted = limits_settings(benchmark).submission_kinds
    if kind not in accepted:
        raise KindNotAccepted(f"benchmark {benchmark.id} does not accept {KIND_WORDS[kind]}; it accepts "
                              f"{' and '.join(KIND_WORDS[k] for k in accepted)}", field="filename")


def _grant(submission: Submission, max_bytes: int, *, content_type: str, blobs: BlobStore, config: Config) -> dict:
    """Presign the upload so the store itself enforces what the API checked: length, type, one upload."""
    bucket, key, expiry = submission.bucket, submission.object_key, config.upload_expiry_s
    size = submission.declared_size
    grant: dict[str, Any] = {"method": submission.upload_method, "key": key, "bucket": bucket,
                             "expires_at": isoformat(submission.expires_at), "max_bytes": max_bytes}
    if submission.upload_method == "put":
        grant["url"], grant["headers"] = blobs.presign_put(bucket, key, expiry, size=size, content_type=content_type,
                                                           once=True)
    elif submission.upload_method == "post":
        grant.update(blobs.presign_post(bucket, key, size or max_bytes, expiry, min_bytes=size or 1,
                                        content_type=content_type))
    else:
        assert size is not None  # a multipart grant is only made for a declared size
        part_size = max(config.multipart_part_bytes, math.ceil(size / MAX_PARTS))
        count = math.ceil(size / part_size)
        submission.upload_id = blobs.start_multipart(bucket, key, content_type)
        grant.update({
            "upload_id": submission.upload_id,
            "part_size": part_size,
            "parts": [{"part_number": n, "size": min(part_size, size - (n - 1) * part_size),
                       "url": blobs.presign_part(bucket, key, submission.upload_id, n, expiry,
                                                 size=min(part_size, size - (n - 1) * part_size))}
                      for n in range(1, count + 1)],
            "complete": f"/v1/submissions/{submission.id}/complete",
        })
    return grant


def complete_multipart(submission_id: str, body: dict, principal: Principal, *, blobs: BlobStore) -> Submission:
    """Join the uploaded parts ({parts: [{part_number, etag}]}); the store then notifies."""
    submission = get_submission(submission_id, principal)
    if submission.upload_method != "multipart" or not submission.upload_id:
        raise Conflict("this submission has no open multipart upload")
    if submission.status != SubmissionStatus.AWAITING_UPLOAD.value:
        raise Conflict(f"this submission is {submission.status}; ask for a new grant")
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise ValidationFailed("'parts' must be a non-empty list of {part_number, etag}", field="parts")
    try:
        parts = [{"PartNumber": int(p["part_number"]), "ETag": str(p["etag"])} for p in parts]
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed("each part needs 'part_number' and 'etag'", field="parts") from None
    blobs.complete_multipart(submission.bucket, submission.object_key, submission.upload_id, parts)
    Submission.update(upload_id=None).where(Submission.id == submission.id).execute()
    return Submission.get_by_id(submission.id)


def get_submission(submission_id: str, principal: Principal) -> Submission:
    """Return a submission the principal owns (admins: any); NotFound otherwise."""
    try:
        query = Submission.select().where(Submission.id == uuid.UUID(str(submission_id)))
    except ValueError:
        raise NotFound(f"submission {submission_id} not found") from None
    if not principal.is_admin:
        query = query.where(Submission.owner == principal.owner)
    row = query.first()
    if row is None:
        raise NotFound(f"submission {submission_id} not found")
    return row


def list_submissions(benchmark_id: str, principal: Principal) -> list[Submission]:
    """Return the caller's submissions to a benchmark (an admin's: everyone's)."""
    benchmark = get_benchmark(benchmark_id, principal)
    query = Submission.select().where(Submission.benchmark == benchmark.id).order_by(Submission.created_at.desc())
    return list(query if principal.is_admin else query.where(Submission.owner == principal.owner))


def serialize(submission: Submission, *, new: bool = False) -> dict:
    """Shape a submission; `new` skips the runs query (a submission just created has none)."""
    return {
        "id": str(submission.id),
        "benchmark": submission.benchmark_id,
        "owner": submission.owner,
        "name": submission.name,
        "version": submission.version,
        "status": submission.status,
        "key": submission.object_key,
        "filename": submission.filename,
        "declared_size": submission.declared_size,
        "size": submission.size,
        "sha256": submission.sha256,
        "upload_method": submission.upload_method,
        "kind": submission.kind,
        "baseline": submission.baseline,
        "team": str(submission.team_id) if submission.team_id else None,
        "created_at": isoformat(submission.created_at),
        "expires_at": isoformat(submission.expires_at),
        "uploaded_at": isoformat(submission.uploaded_at),
        "runs": [] if new else [{"id": str(run.id), "status": run.status} for run in submission.runs],
    }


def fetch_bundle(submission: Submission, path: Path, max_bytes: int, *, blobs: BlobStore) -> str:
    """Download the very object its upload event named (ETag pinned); returns its sha256.

    A bundle replaced after its event is refused, never evaluated; one over the
    limit is deleted from the store. Raises ValueError with the participant's sentence, and
    BundleMissing when the bundle was deleted after its upload event.
    """
    bucket, key = submission.bucket, submission.object_key
    missing = BundleMissing("the uploaded bundle is no longer in the store (deleted after it was uploaded); "
                            "submit it again")
    head = blobs.head(bucket, key)
    if head is None:
        raise missing
    if submission.etag is None:  # an event without an ETag: pin the object as it is now, once
        (Submission.update(etag=head["etag"])
         .where((Submission.id == submission.id) & Submission.etag.is_null()).execute())
        submission = Submission.get_by_id(submission.id)
    replaced = ValueError("the bundle was replaced after it was uploaded; only the first upload of a grant is "
                          "evaluated: ask for a new grant and submit again")
    if head["etag"] != submission.etag:
        raise replaced
    if head["size"] is not None and head["size"] > max_bytes:
        _discard(submission, blobs)
        raise ValueError(f"the uploaded bundle has {head['size']} bytes, over this benchmark's limit of {max_bytes}")
    try:
        sha256 = blobs.download(bucket, key, path, max_bytes=max_bytes, if_match=submission.etag)
    except ObjectChanged:
        raise replaced from None
    except ObjectMissing:
        raise missing from None
    except ValueError:
        _discard(submission, blobs)
        raise ValueError(f"the uploaded bundle is over this benchmark's limit of {max_bytes} bytes") from None
    Submission.update(sha256=sha256).where(Submission.id == submission.id).execute()
    return sha256


def _discard(submission: Submission, blobs: BlobStore) -> None:
    """Delete a refused upload: nothing the platform refused stays in the bucket."""
    blobs.delete(submission.bucket, submission.object_key)
    Submission.update(status=SubmissionStatus.REJECTED.value).where(Submission.id == submission.id).execute()
    logger.info("Deleted refused upload s3://%s/%s", submission.bucket, submission.object_key)


def end_pending(token_id: uuid.UUID, *, blobs: BlobStore | None = None) -> int:
    """End the submissions a (revoked) token asked for and has not uploaded: their uploads start nothing."""
    pending = list(Submission.select().where((Submission.token_id == token_id)
                                             & (Submission.status == SubmissionStatus.AWAITING_UPLOAD.value)))
    for submission in pending:
        (Submission.update(status=SubmissionStatus.REJECTED.value, upload_id=None)
         .where((Submission.id == submission.id)
                & (Submission.status == SubmissionStatus.AWAITING_UPLOAD.value)).execute())
        if submission.upload_id and blobs is not None:  # its part URLs stop working at once
            blobs.abort_multipart(submission.bucket, submission.object_key, submission.upload_id)
    return len(pending)
