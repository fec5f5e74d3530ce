"""API tokens: issue once, store only a hash, authenticate bearer secrets."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets as _secrets
import uuid
from typing import TYPE_CHECKING

from evaluator.errors import NotFound, ValidationFailed
from evaluator.storage.layout import is_slug
from evaluator.storage.models import ApiToken, Role, utcnow

if TYPE_CHECKING:
    from evaluator.storage.blobs import BlobStore

TOKEN_PREFIX = "evt_"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: an owner name, a role, and the token it came with (its grants end with it)."""

    owner: str
    role: str
    token_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(owner: str, role: str, label: str | None = None) -> tuple[str, ApiToken]:
    """Create a token; the secret is returned once and never stored."""
    if not is_slug(owner):
        raise ValidationFailed("owner must be 1-100 letters, digits, '.', '_' or '-'", field="owner")
    if role not in {r.value for r in Role}:
        raise ValidationFailed(f"role must be one of {sorted(r.value for r in Role)}", field="role")
    secret = TOKEN_PREFIX + _secrets.token_urlsafe(32)
    row = ApiToken.create(owner=owner, role=role, token_hash=hash_token(secret), label=label)
    return secret, row


def authenticate(secret: str) -> Principal | None:
    """Return the principal of a live token, or None (unknown or revoked)."""
    row = ApiToken.get_or_none((ApiToken.token_hash == hash_token(secret)) & ApiToken.revoked_at.is_null())
    return Principal(row.owner, row.role, row.id) if row else None


def revoke_token(token_id: str, *, blobs: BlobStore | None = None) -> int:
    """Revoke a token and end the submissions it asked for and has not uploaded; returns how many ended.

    With `blobs`, their open multipart uploads are aborted too, so their part URLs stop working.
    """
    from evaluator.submissions import end_pending  # NOTE: submissions imports this module

    try:
        token_uuid = uuid.UUID(str(token_id))
    except ValueError:
        raise NotFound(f"token {token_id} not found") from None
    updated = ApiToken.update(revoked_at=utcnow()).where(ApiToken.id == token_uuid).execute()
    if not updated:
        raise NotFound(f"token {token_id} not found")
    return end_pending(token_uuid, blobs=blobs)
