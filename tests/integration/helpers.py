"""Helpers shared by integration tests: datasets, benchmarks, bundles and grants over HTTP."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests


def iris_like(n: int = 150, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Return (features, labels) tables of a small 3-class problem keyed by row_id."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + y[:, None] * 1.5
    ids = [f"r{i:05d}" for i in range(n)]
    features = pa.table({"row_id": ids, **{f"f{j}": x[:, j] for j in range(4)}})
    labels = pa.table({"row_id": ids, "target": y})
    return features, labels


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def register_dataset_over_http(api, admin, *, name="iris", version="1", features=None, labels=None,
                               register: bool = True) -> dict:
    """Declare a dataset and upload both files to their presigned URLs; returns the API's dataset."""
    if features is None:
        features, labels = iris_like()
    response = api.simulate_post("/v1/datasets", json={"name": name, "version": version}, headers=admin)
    assert response.status_code == 201, response.text
    for part, table in (("features", features), ("labels", labels)):
        put = requests.put(response.json["uploads"][part]["url"], data=parquet_bytes(table), timeout=30)
        assert put.status_code == 200, put.text
    if not register:  # left pending, for its upload events to register
        return response.json
    registered = register_uploaded(response.json)
    return {**response.json, "status": registered.status, "reason": registered.reason}


def register_uploaded(declared: dict):
    """Run the real registration of an uploaded dataset, as its upload events would on a worker.

    A benchmark stands only on a ready dataset; TestClient tests start no worker, so the helper does it.
    """
    import tempfile
    from urllib.parse import urlsplit

    from evaluator.config import Config
    from evaluator.datasets import register_dataset
    from evaluator.storage.blobs import BlobStore
    from tests.conftest import S3_KEY, S3_SECRET

    url = urlsplit(declared["uploads"]["features"]["url"])
    bucket = url.path.lstrip("/").split("/", 1)[0]
    config = Config(s3_endpoint_url=f"{url.scheme}://{url.netloc}", s3_access_key=S3_KEY, s3_secret_key=S3_SECRET,
                    datasets_bucket=bucket)
    with tempfile.TemporaryDirectory(prefix="register-") as work:
        return register_dataset(declared["id"], blobs=BlobStore.from_config(config), config=config,
                                work_dir=Path(work))


def create_benchmark(api, admin, *, benchmark_id="iris", dataset="iris:1", **extra) -> dict:
    body = {"id": benchmark_id, "dataset": dataset, "task": "classification", **extra}
    response = api.simulate_post("/v1/benchmarks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json


def request_grant(api, headers, benchmark="iris", **body) -> dict:
    response = api.simulate_post(f"/v1/benchmarks/{benchmark}/submissions",
                                 json={"name": "model", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json


def upload_with_grant(grant: dict, data: bytes) -> None:
    upload = grant["upload"]
    if upload["method"] == "put":  # the grant signs these headers (length, type, If-None-Match)
        response = requests.put(upload["url"], data=data, headers=upload["headers"], timeout=60)
        assert response.status_code == 200, response.text
    else:
        response = requests.post(upload["url"], data=upload["fields"], files={"file": ("bundle", data)}, timeout=60)
        assert response.status_code == 204, response.text


def tar_bundle(files: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return sink.getvalue()


def minio_event(bucket: str, key: str, size: int, etag: str, name: str = "s3:ObjectCreated:Put") -> dict:
    from urllib.parse import quote_plus

    return {"EventName": name, "Key": f"{bucket}/{key}", "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": size, "eTag": etag,
                                                      "sequencer": "1800A"}}}]}


def json_dumps(value) -> str:
    return json.dumps(value)
