"""Resources for /v1/datasets: parse, call evaluator.datasets, shape the response."""

from __future__ import annotations

import falcon

from evaluator import datasets
from evaluator.api.hooks import admin_only, json_body, publisher
from evaluator.config import Config
from evaluator.storage.blobs import BlobStore


class DatasetCollection:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @falcon.before(admin_only)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [datasets.serialize(d) for d in datasets.list_datasets()]}

    @falcon.before(publisher)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        dataset, grants = datasets.create_dataset(req.context.body, blobs=self._blobs, config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/datasets/{dataset.id}"
        resp.media = {**datasets.serialize(dataset), "uploads": grants}


class DatasetItem:
    @falcon.before(admin_only)
    def on_get(self, req: falcon.Request, resp: falcon.Response, dataset_id: str) -> None:
        resp.media = datasets.serialize(datasets.get_dataset(dataset_id))
