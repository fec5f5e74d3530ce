"""Datasets: declare one (row + upload grants), look it up, and shape it for clients."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evaluator import fields
from evaluator.config import Config
from evaluator.errors import Conflict, NotFound, ValidationFailed
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Dataset, DatasetStatus, isoformat, utcnow
from evaluator.tokens import Principal

PARTS = ("features", "labels")


def create_dataset(body: dict, principal: Principal, *, blobs: BlobStore, config: Config) -> tuple[Dataset, dict]:
    """Record a pending dataset owned by the caller and grant PUT URLs for its features and labels files."""
    name = fields.slug(body, "name")
    version = fields.slug(body, "version", "1")
    file_format = fields.choice(body, "format", layout.DATA_EXTENSIONS, "parquet")
    row_id = fields.text(body, "row_id_column", "row_id", max_length=200)
    target = fields.text(body, "target_column", "target", max_length=200)
    raw_sizes = fields.mapping(body, "sizes", {})
    sizes = {part: fields.integer(raw_sizes, part, None, minimum=1) for part in PARTS}
    # NOTE: names are one namespace for everyone (they are object keys): a taken name says only that.
    if Dataset.get_or_none((Dataset.name == name) & (Dataset.version == version)):
        raise Conflict(f"dataset {name}:{version} is taken; choose another name or version")
    dataset = Dataset.create(
        name=name, version=version, file_format=file_format, row_id_column=row_id, target_column=target,
        features_key=layout.dataset_key(name, version, "features", file_format),
        labels_key=layout.dataset_key(name, version, "labels", file_format),
        owner=principal.owner,
    )
    return dataset, upload_grants(dataset, sizes, blobs=blobs, config=config)


def upload_grants(dataset: Dataset, sizes: Mapping[str, int | None], *, blobs: BlobStore, config: Config) -> dict:
    """PUT grants for both files; a declared size is signed (the store refuses any other length)."""
    bucket, expiry = config.datasets_bucket, config.upload_expiry_s
    grants = {}
    for part, key in zip(PARTS, (dataset.features_key, dataset.labels_key)):
        url, headers = blobs.presign_put(bucket, key, expiry, size=sizes.get(part))
        grants[part] = {"method": "put", "url": url, "headers": headers, "key": key, "expires_in": expiry}
    return grants


def usable_by(principal: Principal):
    """Return the query of datasets a caller may use: an admin any, an owner those she registered."""
    query = Dataset.select()
    return query if principal.is_admin else query.where(Dataset.owner == principal.owner)


def find_dataset(ref: str, principal: Principal) -> Dataset | None:
    """Find a dataset the caller may use by id or by `name:version`; None for missing and not-yours alike."""
    try:
        condition = Dataset.id == uuid.UUID(str(ref))
    except ValueError:
        name, _, version = str(ref).partition(":")
        condition = (Dataset.name == name) & (Dataset.version == (version or "1"))
    return usable_by(principal).where(condition).first()


def get_dataset(ref: str, principal: Principal) -> Dataset:
    """Return a dataset the caller may use; NotFound otherwise (whether it exists does not leak)."""
    row = find_dataset(ref, principal)
    if row is None:
        raise NotFound(f"dataset {ref} not found")
    return row


def dataset_field(body: dict, principal: Principal) -> Dataset:
    """Resolve a body's 'dataset' to one the caller may use; one answer for missing and not-yours."""
    ref = fields.text(body, "dataset")
    row = find_dataset(ref, principal)
    if row is None:
        raise ValidationFailed(f"'dataset': no dataset {ref} that you may use", field="dataset")
    return row


def require_ready(dataset: Dataset) -> Dataset:
    """Refuse (409, with the reason) a dataset that is not registered: a benchmark on it fails every run."""
    if dataset.status == DatasetStatus.READY.value:
        return dataset
    if dataset.status == DatasetStatus.PENDING.value:
        raise Conflict(f"dataset {dataset.ref} is pending: both its files must be uploaded and registered first "
                       f"(`evaluator datasets show {dataset.ref}` says when it is ready)")
    raise Conflict(f"dataset {dataset.ref} is {dataset.status}: {dataset.reason or 'no reason recorded'}; "
                   "upload corrected files as a new version")


def may_use(dataset: Dataset, principal: Principal) -> bool:
    return principal.is_admin or (dataset.owner is not None and dataset.owner == principal.owner)


def list_datasets(principal: Principal) -> list[Dataset]:
    return list(usable_by(principal).order_by(Dataset.name, Dataset.version))


def serialize(dataset: Dataset) -> dict:
    return {
        "id": str(dataset.id),
        "name": dataset.name,
        "version": dataset.version,
        "ref": dataset.ref,
        "owner": dataset.owner,
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


def register_dataset(dataset_id: str, *, blobs: BlobStore, config: Config, work_dir: Path) -> Dataset:
    """Check an uploaded dataset (schema, row ids) and mark it ready or invalid with a reason.

    Waits (returns it still pending) until both files are in the store; safe to repeat.
    """
    dataset = Dataset.get_by_id(dataset_id)
    if dataset.status != DatasetStatus.PENDING.value:
        return dataset
    bucket = config.datasets_bucket
    if blobs.head(bucket, dataset.features_key) is None or blobs.head(bucket, dataset.labels_key) is None:
        return dataset
    work_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: each call its own folder: both files' events may register the same dataset at once.
    folder = Path(tempfile.mkdtemp(prefix=f"register-{dataset.id}-", dir=work_dir))
    try:
        features = folder / f"features.{dataset.file_format}"
        labels = folder / f"labels.{dataset.file_format}"
        features_sha = blobs.download(bucket, dataset.features_key, features)
        labels_sha = blobs.download(bucket, dataset.labels_key, labels)
        try:
            rows, columns = check_files(features, labels, dataset.row_id_column, dataset.target_column)
        except ValueError as ex:
            changes: dict[str, object] = {"status": DatasetStatus.INVALID.value, "reason": str(ex)}
        else:
            changes = {"status": DatasetStatus.READY.value, "reason": None, "row_count": rows, "columns": columns}
        (Dataset.update(features_sha256=features_sha, labels_sha256=labels_sha, registered_at=utcnow(), **changes)
         .where((Dataset.id == dataset.id) & (Dataset.status == DatasetStatus.PENDING.value)).execute())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Dataset.get_by_id(dataset.id)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet or CSV file (by its magic bytes), optionally only some columns."""
    with open(path, "rb") as handle:
        is_parquet = handle.read(4) == b"PAR1"
    try:
        if is_parquet:
            return pq.read_table(path, columns=columns)
        table = pacsv.read_csv(path)
        return table.select(columns) if columns else table
    except (pa.ArrowInvalid, KeyError, OSError) as ex:
        raise ValueError(f"{path.name} cannot be read as Parquet or CSV: {ex}") from None


def check_files(features: Path, labels: Path, row_id: str, target: str) -> tuple[int, list[str]]:
    """Validate the pair: ids present, unique, the same set; labels carry the target and no nulls."""
    feature_columns = _schema_names(features)
    if row_id not in feature_columns:
        raise ValueError(f"features file has no row id column '{row_id}' (columns: {feature_columns[:20]})")
    if target in feature_columns:
        raise ValueError(f"features file must not contain the target column '{target}'")
    label_columns = _schema_names(labels)
    for column in (row_id, target):
        if column not in label_columns:
            raise ValueError(f"labels file has no column '{column}' (columns: {label_columns[:20]})")
    feature_ids = read_table(features, [row_id]).column(0)
    label_table = read_table(labels, [row_id, target])
    for name, ids in (("features", feature_ids), ("labels", label_table.column(0))):
        if ids.null_count:
            raise ValueError(f"{name} file has {ids.null_count} rows without a row id")
        if pc.count_distinct(ids).as_py() != len(ids):
            raise ValueError(f"{name} file has duplicated row ids")
    if label_table.column(1).null_count:
        raise ValueError(f"labels file has {label_table.column(1).null_count} rows without a target")
    if len(feature_ids) != len(label_table) or not pc.all(pc.is_in(feature_ids, label_table.column(0))).as_py():
        raise ValueError("features and labels do not have the same row ids")
    return len(feature_ids), feature_columns


def _schema_names(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        if handle.read(4) != b"PAR1":
            return read_table(path).column_names
    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as ex:
        raise ValueError(f"{path.name} is not a valid Parquet file: {ex}") from None
