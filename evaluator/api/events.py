"""Resource for /v1/events/s3: the stores' webhooks (MinIO, SeaweedFS) deliver notifications here."""

from __future__ import annotations

import hmac
import logging

import falcon
import peewee

from evaluator import events, intake
from evaluator.api.operations import ANYONE, EMPTY, EVENTS, operation
from evaluator.config import Config
from evaluator.contract import inputs, outputs
from evaluator.errors import ConfigInvalid, Unauthorized

logger = logging.getLogger(__name__)


class S3Events:
    auth = "events"  # a shared secret, not a user token

    def __init__(self, config: Config, database: peewee.Database, queues: intake.Queues) -> None:
        self._config = config
        self._database = database
        self._queues = queues

    def check_token(self, req: falcon.Request) -> None:
        """Admit only the store's shared secret (operations.EVENTS runs this before the body is read)."""
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

    @operation("receiveBucketEvent", "Bucket notifications (MinIO webhook, SeaweedFS filer webhook)",
               tag="events", access=EVENTS, body=inputs.EventNotification, responses={200: outputs.EventsAccepted})
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        records = events.parse_notification(req.context.body)
        outcomes = intake.ingest(records, database=self._database, config=self._config, queues=self._queues)
        resp.media = {"accepted": len(records), "outcomes": [
            {"key": o.key, "action": o.action, "detail": o.detail, "run_id": o.run_id, "dataset_id": o.dataset_id}
            for o in outcomes]}

    @operation("probeBucketEvents", "MinIO probes its webhook target with HEAD before it sends", tag="events",
               access=ANYONE, responses={200: EMPTY})
    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_200
