"""Resources for /v1/tokens: admins issue (shown once) and revoke API tokens."""

from __future__ import annotations

import falcon

from evaluator import fields, tokens
from evaluator.api.hooks import admin_only, json_body
from evaluator.storage.blobs import BlobStore


class TokenCollection:
    @falcon.before(admin_only)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        secret, row = tokens.create_token(fields.slug(body, "owner"), fields.text(body, "role", "participant"),
                                          body.get("label"))
        resp.status = falcon.HTTP_201
        resp.media = {"id": str(row.id), "owner": row.owner, "role": row.role, "token": secret}


class TokenItem:
    def __init__(self, blobs: BlobStore | None = None) -> None:
        self._blobs = blobs

    @falcon.before(admin_only)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        """Revoke a token; the grants it was given and has not used end with it."""
        tokens.revoke_token(token_id, blobs=self._blobs)
        resp.status = falcon.HTTP_204
