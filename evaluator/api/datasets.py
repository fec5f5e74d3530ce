"""Resources for /v1/datasets: parse, call evaluator.datasets, shape the response."""

from __future__ import annotations

import falcon

from evaluator import datasets
from evaluator.api.hooks import json_body, publisher
from evaluator.config import Config
from evaluator.storage.blobs import BlobStore


class DatasetCollection:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @falcon.before(publisher)  # an owner lists her own datasets, an admin all of them
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [datasets.serialize(d) for d in datasets.list_datasets(req.context.principal)]}

    @falcon.before(publisher)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        dataset, grants = datasets.create_dataset(req.context.body, req.context.principal, blobs=self._blobs,
                                                  config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/datasets/{dataset.id}"
        resp.media = {**datasets.serialize(dataset), "uploads": grants}


class DatasetItem:
    @falcon.before(publisher)  # another owner's dataset is answered as a missing one
    def on_get(self, req: falcon.Request, resp: falcon.Response, dataset_id: str) -> None:
        resp.media = datasets.serialize(datasets.get_dataset(dataset_id, req.context.principal))
