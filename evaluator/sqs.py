"""`listen-sqs`: pull AWS S3 notifications from SQS; delete a message only once it is recorded."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from evaluator import events
from evaluator.errors import ValidationFailed
from evaluator.events import ObjectCreated

logger = logging.getLogger(__name__)

Ingest = Callable[[list[ObjectCreated]], object]


def make_sqs_client(config: Any) -> Any:
    import boto3

    return boto3.client("sqs", region_name=config.s3_region, endpoint_url=config.sqs_endpoint_url or None,
                        aws_access_key_id=config.s3_access_key, aws_secret_access_key=config.s3_secret_key)


def poll_once(client: Any, queue_url: str, ingest: Ingest, *, wait_s: int = 20) -> int:
    """Receive one batch, ingest each message, delete what was ingested; returns messages handled.

    A message whose ingest raises (DB or broker down) is left alone: SQS makes it
    visible again after its visibility timeout, so it is retried, never lost.
    """
    reply = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
    handled = 0
    for message in reply.get("Messages", []):
        try:
            body = json.loads(message["Body"])
            records = events.parse_s3_records(body, source="aws") if isinstance(body, dict) else None
            if records is None:
                raise ValidationFailed("not a JSON object")
        except (json.JSONDecodeError, ValidationFailed) as ex:
            logger.warning("Dropping malformed SQS message %s: %s", message.get("MessageId"), ex)
        else:
            if records:
                ingest(records)  # raises on infrastructure errors: the message stays in the queue
            elif body.get("Event") == "s3:TestEvent":
                logger.info("Skipping the s3:TestEvent of bucket %s", body.get("Bucket"))
        client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        handled += 1
    return handled


def listen(client: Any, queue_url: str, ingest: Ingest, *, wait_s: int = 20,
           stop: threading.Event | None = None) -> None:
    """Long-poll until stopped; errors at the loop boundary are logged and retried."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            poll_once(client, queue_url, ingest, wait_s=wait_s)
        except Exception:  # noqa: BLE001 - loop boundary; the message is still in SQS
            logger.error("SQS poll failed; retrying", exc_info=True)
            stop.wait(2)
