"""Who is calling: bearer tokens checked against the ledger's token view (SHA-256 at rest).

Authentication always comes before any lookup, so an unauthenticated caller never learns whether a
job exists.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import msgspec

from api.errors import NotAuthenticated, PermissionDenied
from projections.views import Views


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    user_id: str
    is_admin: bool
    expires_at: str | None = None  # the token's, ISO-8601 UTC (for whoami and the expiry warning header)


def bearer_secret(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; a malformed header is a 401."""
    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip() or " " in secret.strip():
        raise NotAuthenticated("Malformed Authorization header: expected 'Bearer <token>'")
    return secret.strip()


def identify(views: Views, secret: str, *, now: datetime | None = None) -> Identity:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    token_id = views.tokens_by_secret.get(digest)
    token = views.tokens.get(token_id) if token_id else None
    # compare_digest keeps the final comparison constant-time even though the lookup is by hash.
    if token is None or not hmac.compare_digest(token.secret_sha256, digest):
        raise NotAuthenticated("Invalid token")
    if token.revoked:
        raise NotAuthenticated("Token has been revoked")
    if datetime.fromisoformat(token.expires_at) <= (now or datetime.now(UTC)):
        raise NotAuthenticated("Token has expired")
    return Identity(
        token_id=token.token_id, user_id=token.user_id, is_admin=token.is_admin, expires_at=token.expires_at
    )


def require(views: Views, header: str | None) -> Identity:
    secret = bearer_secret(header)
    if secret is None:
        raise NotAuthenticated("Not authenticated: send 'Authorization: Bearer <token>'")
    return identify(views, secret)


def optional(views: Views, header: str | None) -> Identity | None:
    secret = bearer_secret(header)
    return identify(views, secret) if secret is not None else None


def check_user_filter(identity: Identity, user_id: str | None) -> str | None:
    """A ``user_id`` parameter must be the caller's own unless the caller is an admin (then: a filter)."""
    if user_id is None:
        return None if identity.is_admin else identity.user_id
    if user_id != identity.user_id and not identity.is_admin:
        raise PermissionDenied("Token does not belong to specified user_id")
    return user_id


def require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise PermissionDenied("Admin privileges required")
