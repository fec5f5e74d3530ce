"""Resource for /v1/events/s3: the stores' webhooks (MinIO, SeaweedFS) deliver notifications here."""

from __future__ import annotations

import hmac
import logging

import falcon
import peewee

from evaluator import events, intake
from evaluator.api.hooks import json_body
from evaluator.config import Config
from evaluator.errors import ConfigInvalid, Unauthorized

logger = logging.getLogger(__name__)


class S3Events:
    auth = "events"  # a shared secret, not a user token

    def __init__(self, config: Config, database: peewee.Database, queues: intake.Queues) -> None:
        self._config = config
        self._database = database
        self._queues = queues

    def _check_token(self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        try:
            self._config.check_events_token()  # the entry points refuse to start too; this covers any other
        except ConfigInvalid:
            logger.error("Refused an event: EVALUATOR_EVENTS_TOKEN is empty or the published placeholder")
            raise ConfigInvalid("the events endpoint has no usable token configured") from None
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        # NOTE: constant-time comparison; the token gates who may start evaluations.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._config.events_token.strip().encode()):
            raise Unauthorized("the events endpoint needs the store's shared bearer token")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._check_token(req, resp, self, {})
        json_body(req, resp, self, {})
        records = events.parse_notification(req.context.body)
        outcomes = intake.ingest(records, database=self._database, config=self._config, queues=self._queues)
        resp.media = {"accepted": len(records), "outcomes": [
            {"key": o.key, "action": o.action, "detail": o.detail, "run_id": o.run_id, "dataset_id": o.dataset_id}
            for o in outcomes]}

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        """MinIO probes its webhook target with HEAD before it sends."""
        resp.status = falcon.HTTP_200
