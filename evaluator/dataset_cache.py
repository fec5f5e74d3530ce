"""The worker host's dataset cache: each dataset's files downloaded once, content-addressed by their sha256.

Used by the run pipeline (features and labels), re-scoring and the API's row store (labels for comparisons);
kept apart from evaluator.pipeline so the API does not import the sandbox and the plots to read a cached file.
"""

from __future__ import annotations

import os
from pathlib import Path

from evaluator.config import Config
from evaluator.errors import DatasetMissing, InfrastructureError, ObjectMissing
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Dataset, DatasetStatus


def stage_dataset(dataset: Dataset, *, blobs: BlobStore, config: Config) -> tuple[Path, Path]:
    """Download a dataset's files once per worker host (content-addressed by their sha256).

    The cache lives outside every run folder: nothing here is ever mounted into a sandbox.

    Raises:
        DatasetMissing: a file of the dataset is no longer in the store (the operator's to fix).
        InfrastructureError: the dataset is not ready yet, or the store failed.
    """
    if dataset.status != DatasetStatus.READY.value:  # still registering: retried, and the reconciler re-queues it later
        raise InfrastructureError(f"dataset {dataset.ref} is {dataset.status}, not ready")
    folder = Path(config.work_dir) / "datasets" / f"{dataset.id}-{(dataset.labels_sha256 or '')[:12]}"
    paths = (folder / f"features.{dataset.file_format}", folder / f"labels.{dataset.file_format}")
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for key, path in zip((dataset.features_key, dataset.labels_key), paths):
        partial = path.with_suffix(f".part-{os.getpid()}")
        try:
            blobs.download(config.datasets_bucket, key, partial)
        except ObjectMissing:
            raise DatasetMissing(f"a file of the benchmark's dataset {dataset.ref} is gone from the store; "
                                 "the organiser must publish the dataset again") from None
        os.replace(partial, path)
    return paths
