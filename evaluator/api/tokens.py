"""Resources for /v1/tokens: admins issue (shown once) and revoke API tokens."""

from __future__ import annotations

import falcon

from evaluator import tokens
from evaluator.api.operations import EMPTY, operation, roles
from evaluator.contract import inputs, outputs
from evaluator.storage.blobs import BlobStore


class TokenCollection:
    @operation("createToken", "Issue an API token, shown once (admin)", tag="tokens", access=roles("admin"),
               body=inputs.TokenIn, responses={201: outputs.TokenCreated})
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        secret, row = tokens.create_token(body["owner"], body.get("role", "participant"), body.get("label"))
        resp.status = falcon.HTTP_201
        resp.media = {"id": str(row.id), "owner": row.owner, "role": row.role, "token": secret}


class TokenItem:
    def __init__(self, blobs: BlobStore | None = None) -> None:
        self._blobs = blobs

    @operation("revokeToken", "Revoke an API token (admin); its unused grants end with it", tag="tokens",
               access=roles("admin"), responses={204: EMPTY}, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        """Revoke a token; the grants it was given and has not used end with it."""
        tokens.revoke_token(token_id, blobs=self._blobs)
        resp.status = falcon.HTTP_204
