"""The token state machine: issue (revoking the user's previous tokens) and revoke. Pure functions."""

from __future__ import annotations

import hashlib

import msgspec

from ledger.errors import InvalidTransition
from ledger.events import AnyEvent, TokenIssued, TokenRevoked


class TokenState(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    user_id: str
    is_admin: bool
    created_at: int
    expires_at: str
    secret_sha256: str
    version: int = 1
    revoked: bool = False
    revoked_at: int | None = None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def evolve_token(state: TokenState | None, event: AnyEvent, *, at: int) -> TokenState:
    match event:
        case TokenIssued():
            return TokenState(token_id=event.token_id, user_id=event.user_id, is_admin=event.is_admin,
                              created_at=at, expires_at=event.expires_at, secret_sha256=event.secret_sha256)
        case TokenRevoked():
            assert state is not None, "token.revoked before token.issued"
            return msgspec.structs.replace(state, version=state.version + 1, revoked=True, revoked_at=at)
    raise AssertionError(f"not a token event: {event!r}")


def decide_issue(issued: TokenIssued, *, existing_for_user: list[TokenState],
                 secret_in_use: bool) -> list[AnyEvent]:
    """Creating a token revokes the user's previous ones (one live token per user)."""
    if secret_in_use:
        raise InvalidTransition("that token value is already in use; choose another")
    revokes: list[AnyEvent] = [
        TokenRevoked(token_id=t.token_id, user_id=t.user_id, by=issued.by, reason="replaced by a new token")
        for t in existing_for_user
        if not t.revoked
    ]
    return [*revokes, issued]


def decide_revoke(state: TokenState, *, by: str, reason: str = "") -> list[AnyEvent]:
    if state.revoked:
        raise InvalidTransition(f"token {state.token_id} is already revoked")
    return [TokenRevoked(token_id=state.token_id, user_id=state.user_id, by=by, reason=reason)]
