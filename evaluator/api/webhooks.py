"""Resources for /v1/webhooks: subscribe a URL to signed run.finished events, list, delete, read the delivery log."""

from __future__ import annotations

import falcon

from evaluator import webhooks
from evaluator.api.operations import EMPTY, TOKEN, operation
from evaluator.config import Config
from evaluator.contract import inputs, outputs


class WebhookCollection:
    def __init__(self, config: Config) -> None:
        self._config = config

    @operation("createWebhook", "Subscribe a URL to signed run.finished events; the secret is shown once",
               tag="webhooks", access=TOKEN, body=inputs.WebhookIn, responses={201: outputs.WebhookCreated},
               errors=(403, 404), description=webhooks.SIGNATURE_SCHEME)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        row, secret = webhooks.create_subscription(
            req.context.principal, url=body["url"], benchmark=body.get("benchmark"),
            scope=body.get("scope", "participant"), events=body.get("events") or list(webhooks.EVENTS),
            config=self._config)
        resp.status = falcon.HTTP_201
        resp.media = webhooks.serialize_subscription(row, secret)

    @operation("listWebhooks", "The caller's webhook subscriptions (an admin's: everyone's)", tag="webhooks",
               access=TOKEN, responses={200: outputs.WebhookList})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = webhooks.visible_subscriptions(req.context.principal).order_by(
            webhooks.WebhookSubscription.created_at)
        resp.media = {"items": [webhooks.serialize_subscription(row) for row in rows]}


class WebhookItem:
    @operation("getWebhook", "One webhook subscription (without its secret)", tag="webhooks", access=TOKEN,
               responses={200: outputs.Webhook}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, webhook_id: str) -> None:
        resp.media = webhooks.serialize_subscription(webhooks.get_subscription(webhook_id, req.context.principal))

    @operation("deleteWebhook", "Delete a webhook subscription and its delivery log", tag="webhooks",
               access=TOKEN, responses={204: EMPTY}, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, webhook_id: str) -> None:
        webhooks.delete_subscription(webhook_id, req.context.principal)
        resp.status = falcon.HTTP_204

    @operation("listWebhookDeliveries", "The subscription's deliveries, newest first: attempts, status, next retry",
               tag="webhooks", access=TOKEN, query=inputs.PageQuery, responses={200: outputs.DeliveryPage},
               errors=(404,))
    def on_get_deliveries(self, req: falcon.Request, resp: falcon.Response, webhook_id: str) -> None:
        query = req.context.query
        rows, total = webhooks.deliveries(webhook_id, req.context.principal, limit=query.limit, offset=query.offset)
        resp.media = {"items": [webhooks.serialize_delivery(row) for row in rows], "total": total,
                      "limit": query.limit, "offset": query.offset}
