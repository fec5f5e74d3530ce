"""Submissions: a row per bundle and the presigned grant that uploads it straight to the store."""

from __future__ import annotations

import datetime
import math
import uuid

from evaluator import competition, fields, quotas
from evaluator.benchmarks import get_benchmark
from evaluator.config import Config
from evaluator.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Submission, isoformat, utcnow
from evaluator.tokens import Principal

UPLOAD_METHODS = ("put", "post", "multipart")
MAX_PARTS = 10_000


def create_submission(benchmark_id: str, body: dict, principal: Principal, *, blobs: BlobStore,
                      config: Config) -> tuple[Submission, dict]:
    """Record a submission awaiting upload and grant its upload; refuse oversize before any URL."""
    benchmark = get_benchmark(benchmark_id, principal)
    name = fields.slug(body, "name")
    version = fields.slug(body, "version", "1")
    filename = fields.text(body, "filename", "bundle.tar.gz", max_length=255)
    ext = layout.bundle_extension(filename)
    if ext is None:
        raise ValidationFailed(f"'filename' must end with one of {list(layout.BUNDLE_EXTENSIONS)}", field="filename")
    size = fields.integer(body, "size", None, minimum=1)
    max_bytes = int(benchmark.limits.get("max_bundle_bytes", config.max_bundle_bytes))
    if size is not None and size > max_bytes:
        raise PayloadTooLarge(f"bundle of {size} bytes is over this benchmark's limit of {max_bytes} bytes")
    competition.check_open(benchmark)
    quotas.check(benchmark, principal.owner)  # NOTE: before any URL is issued
    default_method = "multipart" if size and size > config.multipart_threshold_bytes else "post"
    method = fields.choice(body, "method", UPLOAD_METHODS, default_method)
    if method == "multipart" and size is None:
        raise ValidationFailed("'size' is required for a multipart upload", field="size")

    submission_id = uuid.uuid4()
    key = layout.bundle_key(benchmark.id, principal.owner, name, version, submission_id, ext)
    expires_at = utcnow() + datetime.timedelta(seconds=config.upload_expiry_s)
    submission = Submission(
        id=submission_id, benchmark=benchmark, owner=principal.owner, name=name, version=version,
        bucket=config.bundles_bucket, object_key=key, filename=filename, declared_size=size,
        upload_method=method, expires_at=expires_at,
    )
    grant = _grant(submission, max_bytes, blobs=blobs, config=config)
    submission.save(force_insert=True)
    return submission, grant


def _grant(submission: Submission, max_bytes: int, *, blobs: BlobStore, config: Config) -> dict:
    bucket, key, expiry = submission.bucket, submission.object_key, config.upload_expiry_s
    grant = {"method": submission.upload_method, "key": key, "bucket": bucket,
             "expires_at": isoformat(submission.expires_at), "max_bytes": max_bytes}
    if submission.upload_method == "put":
        grant["url"] = blobs.presign_put(bucket, key, expiry)
    elif submission.upload_method == "post":
        grant.update(blobs.presign_post(bucket, key, max_bytes, expiry))
    else:
        part_size = max(config.multipart_part_bytes, math.ceil(submission.declared_size / MAX_PARTS))
        count = math.ceil(submission.declared_size / part_size)
        submission.upload_id = blobs.start_multipart(bucket, key)
        grant.update({
            "upload_id": submission.upload_id,
            "part_size": part_size,
            "parts": [{"part_number": n, "url": blobs.presign_part(bucket, key, submission.upload_id, n, expiry)}
                      for n in range(1, count + 1)],
            "complete": f"/v1/submissions/{submission.id}/complete",
        })
    return grant


def complete_multipart(submission_id: str, body: dict, principal: Principal, *, blobs: BlobStore) -> Submission:
    """Join the uploaded parts ({parts: [{part_number, etag}]}); the store then notifies."""
    submission = get_submission(submission_id, principal)
    if submission.upload_method != "multipart" or not submission.upload_id:
        raise Conflict("this submission has no open multipart upload")
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
        "created_at": isoformat(submission.created_at),
        "expires_at": isoformat(submission.expires_at),
        "uploaded_at": isoformat(submission.uploaded_at),
        "runs": [] if new else [{"id": str(run.id), "status": run.status} for run in submission.runs],
    }
