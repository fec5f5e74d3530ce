"""Resources for /v1/datasets: parse, call evaluator.datasets, shape the response."""

from __future__ import annotations

import falcon

from evaluator import datasets
from evaluator.api.operations import operation, roles
from evaluator.config import Config
from evaluator.contract import inputs, outputs
from evaluator.storage.blobs import BlobStore


class DatasetCollection:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @operation("listDatasets", "Datasets the caller may use: an owner's own, an admin's all", tag="datasets",
               access=roles("admin", "owner"), responses={200: outputs.DatasetList})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [datasets.serialize(d) for d in datasets.list_datasets(req.context.principal)]}

    @operation("createDataset", "Declare a dataset and get PUT URLs for its features and labels files",
               tag="datasets", access=roles("admin", "owner"), body=inputs.DatasetIn,
               responses={201: outputs.DatasetCreated}, errors=(409,))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        dataset, grants = datasets.create_dataset(req.context.body, req.context.principal, blobs=self._blobs,
                                                  config=self._config)
        resp.status, resp.location = falcon.HTTP_201, f"/v1/datasets/{dataset.id}"
        resp.media = {**datasets.serialize(dataset), "uploads": grants}


class DatasetItem:
    @operation("getDataset", "One dataset, by id or name:version (another owner's is answered as missing)",
               tag="datasets", access=roles("admin", "owner"), responses={200: outputs.Dataset}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, dataset_id: str) -> None:
        resp.media = datasets.serialize(datasets.get_dataset(dataset_id, req.context.principal))
