"""The embedded S3 server takes writes in many buckets (each test and each dev start makes its own)."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from evaluator.storage.blobs import BlobStore

pytestmark = pytest.mark.integration


def test_the_embedded_store_takes_a_write_in_each_of_many_buckets(config):
    # Given the session's SeaweedFS, whose default volume layout gave out at the 58th bucket here
    store = BlobStore.from_config(config)
    # When 100 new buckets each get an object (8 at a time, as a busy store's clients would)
    buckets = [f"many-{uuid.uuid4().hex[:12]}" for _ in range(100)]

    def fill(bucket: str) -> None:
        store.ensure_buckets(bucket)
        store.put_bytes(bucket, "x", b"hello")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(fill, buckets))
    # Then every object reads back
    assert all(store.get_bytes(bucket, "x") == b"hello" for bucket in buckets)
