"""Bucket notifications (MinIO webhook, SeaweedFS filer webhook, AWS via SQS) -> ObjectCreated.

Pure parsing: nothing downstream knows which store spoke. Anything that is not
the creation of a file (directories, deletes, test events, tagging) yields no
record, so the caller can acknowledge it and move on. What becomes of a record
(a run, a dataset registration, nothing) is decided in evaluator.intake.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any
from urllib.parse import unquote_plus

from evaluator.errors import ValidationFailed

# s3:ObjectCreated:{Put,Post,Copy,CompleteMultipartUpload} create content; tagging/retention do not.
_CREATING = {"Put", "Post", "Copy", "CompleteMultipartUpload"}
_SEAWEED_CREATING = {"create", "update"}


@dataclasses.dataclass(frozen=True)
class ObjectCreated:
    """One created object, whichever store reported it."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version: str | None  # versionId when the bucket is versioned
    sequencer: str | None
    source: str  # minio | aws | seaweedfs

    @property
    def dedupe_version(self) -> str:
        """Identify this object version: versionId, else ETag, else size + sequencer."""
        return self.version or self.etag or f"{self.size}:{self.sequencer}"


def parse_notification(body: Any) -> list[ObjectCreated]:
    """Parse a webhook body of either store; raise ValidationFailed if it is neither shape."""
    if not isinstance(body, dict):
        raise ValidationFailed("the event body must be a JSON object", field="body")
    if "Records" in body or "EventName" in body or body.get("Event") == "s3:TestEvent":
        return parse_s3_records(body, source="minio" if "EventName" in body else "aws")
    if "event_type" in body or "message" in body:
        return parse_seaweed_event(body)
    raise ValidationFailed("unknown event format: expected S3 `Records` or a SeaweedFS filer event", field="body")


def parse_s3_records(body: dict, *, source: str = "aws") -> list[ObjectCreated]:
    """Parse the S3 event format (AWS, moto and MinIO); `s3:TestEvent` carries no records."""
    records = body.get("Records") or []
    if not isinstance(records, list):
        raise ValidationFailed("'Records' must be a list", field="Records")
    created = []
    for record in records:
        try:
            name = str(record.get("eventName", ""))
            if name.removeprefix("s3:").split(":")[0] != "ObjectCreated":
                continue
            if name.rsplit(":", 1)[-1] not in _CREATING:
                continue
            s3, obj = record["s3"], record["s3"]["object"]
            source_name = "minio" if str(record.get("eventSource", "")).startswith("minio") else source
            created.append(ObjectCreated(
                bucket=s3["bucket"]["name"],
                key=unquote_plus(obj["key"]),  # Go's QueryEscape / AWS: '+' is a space
                size=_int(obj.get("size")),
                etag=_etag(obj.get("eTag") or obj.get("etag")),
                version=obj.get("versionId") or None,
                sequencer=obj.get("sequencer") or None,
                source=source_name,
            ))
        except (KeyError, TypeError, AttributeError) as ex:
            raise ValidationFailed(f"malformed S3 event record: missing {ex}", field="Records") from None
    return created


def parse_seaweed_event(body: dict) -> list[ObjectCreated]:
    """Parse one SeaweedFS filer event: `key` is /buckets/<bucket>/<key>, not URL-encoded."""
    if body.get("event_type") not in _SEAWEED_CREATING:
        return []
    entry = (body.get("message") or {}).get("new_entry") or {}
    full = str(body.get("key", ""))
    if entry.get("is_directory") or not full.startswith("/buckets/"):
        return []
    bucket, _, key = full[len("/buckets/"):].partition("/")
    if not key or bucket.startswith(".") or key.startswith(".uploads/"):
        return []
    attributes = entry.get("attributes") or {}
    extended = entry.get("extended") or {}
    etag = _b64_text(extended.get("Seaweed-X-Amz-ETag")) or _b64_hex(attributes.get("md5"))
    mtime_ns = attributes.get("mtime_ns") or attributes.get("mtime")
    return [ObjectCreated(bucket=bucket, key=key, size=_int(attributes.get("file_size")), etag=etag,
                          version=None, sequencer=str(mtime_ns) if mtime_ns else None, source="seaweedfs")]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _etag(value: Any) -> str | None:
    return str(value).strip('"') or None if value else None


def _b64_text(value: Any) -> str | None:
    try:
        return base64.b64decode(value).decode("ascii").strip('"') or None if value else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _b64_hex(value: Any) -> str | None:
    try:
        return base64.b64decode(value).hex() or None if value else None
    except (binascii.Error, ValueError):
        return None
