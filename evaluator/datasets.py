"""Datasets: declare one (row + upload grants), look it up, and shape it for clients."""

from __future__ import annotations

import uuid

from evaluator import fields
from evaluator.config import Config
from evaluator.errors import Conflict, NotFound
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Dataset, isoformat


def create_dataset(body: dict, *, blobs: BlobStore, config: Config) -> tuple[Dataset, dict]:
    """Record a pending dataset and grant PUT URLs for its features and labels files."""
    name = fields.slug(body, "name")
    version = fields.slug(body, "version", "1")
    file_format = fields.choice(body, "format", layout.DATA_EXTENSIONS, "parquet")
    row_id = fields.text(body, "row_id_column", "row_id", max_length=200)
    target = fields.text(body, "target_column", "target", max_length=200)
    if Dataset.get_or_none((Dataset.name == name) & (Dataset.version == version)):
        raise Conflict(f"dataset {name}:{version} already exists; publish a new version instead")
    dataset = Dataset.create(
        name=name, version=version, file_format=file_format, row_id_column=row_id, target_column=target,
        features_key=layout.dataset_key(name, version, "features", file_format),
        labels_key=layout.dataset_key(name, version, "labels", file_format),
    )
    return dataset, upload_grants(dataset, blobs=blobs, config=config)


def upload_grants(dataset: Dataset, *, blobs: BlobStore, config: Config) -> dict:
    bucket, expiry = config.datasets_bucket, config.upload_expiry_s
    return {
        part: {"method": "put", "url": blobs.presign_put(bucket, key, expiry), "key": key, "expires_in": expiry}
        for part, key in (("features", dataset.features_key), ("labels", dataset.labels_key))
    }


def get_dataset(ref: str) -> Dataset:
    """Find a dataset by id or by `name:version`."""
    try:
        row = Dataset.get_or_none(Dataset.id == uuid.UUID(str(ref)))
    except ValueError:
        name, _, version = str(ref).partition(":")
        row = Dataset.get_or_none((Dataset.name == name) & (Dataset.version == (version or "1")))
    if row is None:
        raise NotFound(f"dataset {ref} not found")
    return row


def list_datasets() -> list[Dataset]:
    return list(Dataset.select().order_by(Dataset.name, Dataset.version))


def serialize(dataset: Dataset) -> dict:
    return {
        "id": str(dataset.id),
        "name": dataset.name,
        "version": dataset.version,
        "ref": dataset.ref,
        "status": dataset.status,
        "reason": dataset.reason,
        "format": dataset.file_format,
        "row_id_column": dataset.row_id_column,
        "target_column": dataset.target_column,
        "features_key": dataset.features_key,
        "features_sha256": dataset.features_sha256,
        "labels_sha256": dataset.labels_sha256,
        "row_count": dataset.row_count,
        "columns": dataset.columns,
        "created_at": isoformat(dataset.created_at),
        "registered_at": isoformat(dataset.registered_at),
    }
