"""BlobStore: the few object-store verbs we need, over boto3 (any S3: SeaweedFS, MinIO, AWS)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import IO, Any, Iterator

import boto3
import boto3.exceptions
import botocore.exceptions
from botocore.config import Config as BotoConfig

from evaluator.config import Config
from evaluator.errors import InfrastructureError, ObjectMissing

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class ObjectChanged(ValueError):
    """The object under a key is not the version that was pinned (it was replaced after its event)."""


def _error_code(ex: botocore.exceptions.ClientError) -> tuple[str, int]:
    return (str(ex.response.get("Error", {}).get("Code", "")),
            int(ex.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0))


@contextlib.contextmanager
def s3_errors(bucket: str, key: str = "", *, if_match: str | None = None) -> Iterator[None]:
    """Turn botocore's errors into ours, so no caller (and no retry predicate) needs to know botocore.

    A missing object or bucket is ObjectMissing (never retried: the caller names whose problem it is);
    a pinned version that is gone is ObjectChanged; everything else (5xx, throttling, connection and
    read errors, and a store that refuses our credentials) is InfrastructureError, which is retried.
    """
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except botocore.exceptions.ClientError as ex:
        code, status = _error_code(ex)
        if code in _MISSING or status == 404:
            raise ObjectMissing(f"{where} does not exist") from None
        if if_match and (code in {"PreconditionFailed", "412"} or status == 412):
            raise ObjectChanged(f"{where} is no longer the object with ETag {if_match}") from None
        raise InfrastructureError(f"object store error on {where}: {code or status}: {ex}") from ex
    except (botocore.exceptions.BotoCoreError, boto3.exceptions.Boto3Error) as ex:  # connection, timeouts, cut body
        raise InfrastructureError(f"object store unavailable ({where}): {ex}") from ex


def make_s3_client(config: Config, endpoint_url: str | None = None) -> Any:
    """Create a SigV4, path-style client (botocore presigns SigV2 without this)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or config.s3_endpoint_url,
        region_name=config.s3_region,
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=config.s3_secret_key,
        config=BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


class BlobStore:
    """Object-store verbs in our vocabulary; presigned URLs use the clients' endpoint."""

    def __init__(self, client: Any, presign_client: Any | None = None) -> None:
        self._client = client
        self._presign = presign_client or client

    @classmethod
    def from_config(cls, config: Config) -> BlobStore:
        client = make_s3_client(config)
        presign = make_s3_client(config, config.presign_endpoint_url)
        return cls(client, presign)

    # --- setup and health -----------------------------------------------------------

    def ensure_buckets(self, *buckets: str) -> None:
        """Create the buckets that do not exist yet (idempotent)."""
        for bucket in dict.fromkeys(buckets):
            with s3_errors(bucket):
                try:
                    self._client.head_bucket(Bucket=bucket)
                    continue
                except botocore.exceptions.ClientError as ex:
                    if _error_code(ex)[0] not in _MISSING and _error_code(ex)[1] != 404:
                        raise
                try:
                    self._client.create_bucket(Bucket=bucket)
                except botocore.exceptions.ClientError as ex:
                    if _error_code(ex)[0] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise

    def set_cors(self, bucket: str, origins: list[str]) -> None:
        """Let the web pages in `origins` upload straight to this bucket (a presigned POST or PUT from a browser).

        The grant's signature still decides what may be written; CORS only lets those pages send
        it and read the answer. SeaweedFS applies these rules to object paths and answers the
        bucket root's preflight permissively; MinIO's community edition has global CORS only
        (MINIO_API_CORS_ALLOW_ORIGIN) and refuses this call.
        """
        rules = {"CORSRules": [{"AllowedOrigins": list(origins), "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
                                "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]}
        with s3_errors(bucket):
            self._client.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)

    def ping(self, bucket: str) -> None:
        """Raise InfrastructureError unless the store answers for this bucket."""
        try:
            self._client.head_bucket(Bucket=bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as ex:
            raise InfrastructureError(f"object store unavailable: {ex}") from ex  # a missing bucket too

    # --- presigned grants ------------------------------------------------------------

    def presign_put(self, bucket: str, key: str, expires_s: int, *, size: int | None = None,
                    content_type: str | None = None, once: bool = False) -> tuple[str, dict[str, str]]:
        """Return (url, headers the uploader must send): each given term is signed, so the store refuses
        another length or type, and with `once` any upload once the key exists (If-None-Match: *)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        headers: dict[str, str] = {}
        if size is not None:
            params["ContentLength"], headers["Content-Length"] = size, str(size)
        if content_type is not None:
            params["ContentType"], headers["Content-Type"] = content_type, content_type
        if once:
            params["IfNoneMatch"], headers["If-None-Match"] = "*", "*"
        url = self._presign.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_s)
        return url, headers

    def presign_post(self, bucket: str, key: str, max_bytes: int, expires_s: int, *, min_bytes: int = 1,
                     content_type: str | None = None) -> dict:
        """Return {url, fields}: the store itself refuses a body outside min_bytes..max_bytes or of another type."""
        conditions: list[Any] = [["content-length-range", min_bytes, max_bytes]]
        fields = None
        if content_type is not None:
            conditions.append({"Content-Type": content_type})
            fields = {"Content-Type": content_type}
        return self._presign.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions,
                                                     ExpiresIn=expires_s)

    def presign_get(self, bucket: str, key: str, expires_s: int) -> str:
        return self._presign.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )

    def start_multipart(self, bucket: str, key: str, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        with s3_errors(bucket, key):
            return self._client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]

    def presign_part(self, bucket: str, key: str, upload_id: str, part_number: int, expires_s: int,
                     size: int | None = None) -> str:
        """A part's URL; with `size` its length is signed (the store refuses any other)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
        if size is not None:
            params["ContentLength"] = size
        return self._presign.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires_s)

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[dict]) -> str:
        """Join the parts ([{PartNumber, ETag}]); returns the object's ETag."""
        with s3_errors(bucket, key):
            result = self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])},
            )
        return result.get("ETag", "").strip('"')

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort an open multipart upload (its part URLs stop working); False if the store would not."""
        try:
            self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as ex:
            logger.warning("Could not abort multipart upload %s of s3://%s/%s: %s", upload_id, bucket, key, ex)
            return False
        return True

    # --- data -------------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> dict | None:
        """Return {size, etag, version} of an object, or None if it does not exist."""
        try:
            with s3_errors(bucket, key):
                meta = self._client.head_object(Bucket=bucket, Key=key)
        except ObjectMissing:
            return None
        return {
            "size": meta["ContentLength"],
            "etag": meta.get("ETag", "").strip('"'),
            "version": meta.get("VersionId"),
        }

    def open(self, bucket: str, key: str, *, if_match: str | None = None) -> IO[bytes]:
        """Return a streaming body; the caller reads it in chunks and closes it.

        With `if_match` (an ETag) the store serves only that version: ObjectChanged otherwise.

        Raises:
            ObjectMissing: no object under the key. InfrastructureError: the store failed.
        """
        extra = {"IfMatch": f'"{if_match.strip(chr(34))}"'} if if_match else {}
        with s3_errors(bucket, key, if_match=if_match):
            return self._client.get_object(Bucket=bucket, Key=key, **extra)["Body"]

    def iter_chunks(self, bucket: str, key: str, chunk_size: int = CHUNK, *,
                    if_match: str | None = None) -> Iterator[bytes]:
        body = self.open(bucket, key, if_match=if_match)
        try:
            while True:
                with s3_errors(bucket, key):
                    chunk = body.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def download(self, bucket: str, key: str, path: Path, *, max_bytes: int | None = None,
                 if_match: str | None = None) -> str:
        """Stream an object to a file; returns its sha256. Stops past max_bytes; `if_match` pins the version."""
        digest, written = hashlib.sha256(), 0
        with open(path, "wb") as out:
            for chunk in self.iter_chunks(bucket, key, if_match=if_match):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise ValueError(f"s3://{bucket}/{key} is larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return b"".join(self.iter_chunks(bucket, key))

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        with s3_errors(bucket, key):
            result = self._client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return result["ETag"].strip('"')

    def put_json(self, bucket: str, key: str, document: Any) -> str:
        data = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        return self.put_bytes(bucket, key, data, "application/json")

    def upload_file(self, bucket: str, key: str, path: Path) -> None:
        with s3_errors(bucket, key):
            self._client.upload_file(str(path), bucket, key)

    def list_keys(self, bucket: str, prefix: str) -> Iterator[dict]:
        """Yield {key, size, etag} for every object under a prefix."""
        pages = iter(self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
        while True:
            with s3_errors(bucket, prefix):
                page = next(pages, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                yield {"key": item["Key"], "size": item["Size"], "etag": item.get("ETag", "").strip('"')}

    def delete(self, bucket: str, key: str) -> None:
        with s3_errors(bucket, key):
            self._client.delete_object(Bucket=bucket, Key=key)
