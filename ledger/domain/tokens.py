"""The token state machine: issue (revoking the user's previous tokens) and revoke. Pure functions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import AnyEvent, TokenIssued, TokenRevoked


class TokenState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    token_id: str
    user_id: str
    is_admin: bool
    created_at: int
    expires_at: str
    secret_sha256: str
    version: int = 1
    revoked: bool = False
    revoked_at: int | None = None


class Bearer(Protocol):
    """Whoever presents a token, as the rule of who sees what reads them (``api.auth.Identity``)."""

    @property
    def user_id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


def may_see(who: Bearer | None, owner: str) -> bool:
    """The one visibility rule: admins see every user's jobs, users their own, anonymous callers none."""
    return who is not None and (who.is_admin or who.user_id == owner)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def evolve_token(state: TokenState | None, event: AnyEvent, *, at: int) -> TokenState:
    match event:
        case TokenIssued():
            return TokenState(
                token_id=event.token_id,
                user_id=event.user_id,
                is_admin=event.is_admin,
                created_at=at,
                expires_at=event.expires_at,
                secret_sha256=event.secret_sha256,
            )
        case TokenRevoked():
            assert state is not None, "token.revoked before token.issued"
            return msgspec.structs.replace(state, version=state.version + 1, revoked=True, revoked_at=at)
    raise AssertionError(f"not a token event: {event!r}")


def decide_issue(issued: TokenIssued, *, existing_for_user: list[TokenState], secret_in_use: bool) -> list[AnyEvent]:
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


# Chosen tokens are the guessable ones (generated ones carry 256 random bits); 14 keeps the seed's own
# example, ``user_token_123``, valid. Tokens issued before under the old minimum (8) still work: the
# check is at issue time, and the failed-authentication throttle (api/guessing.py) bounds guessing.
MIN_CHOSEN_LENGTH = 14


def new_secret() -> str:
    """A random token secret that never starts with ``-``: ``--token SECRET`` must not read as an option."""
    while (secret := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return secret


def mint(
    user_id: str, *, secret: str | None, days: int, is_admin: bool, by: str, max_days: int = 30
) -> tuple[str, TokenIssued]:
    """A new token's secret (generated when not given) and its ``token.issued`` event.

    Not a decide function: it draws randomness and reads the clock; the decision is ``decide_issue``.
    """
    if not 1 <= days <= max_days:
        raise ValueError(f"--days must be between 1 and {max_days}")
    if not user_id or any(c.isspace() for c in user_id) or len(user_id) > 128:
        raise ValueError("user id must be 1..128 characters without spaces")
    if secret is not None and len(secret) < MIN_CHOSEN_LENGTH:
        raise ValueError(
            f"a chosen token must be at least {MIN_CHOSEN_LENGTH} characters long, not {len(secret)} "
            "(omit it to get a generated one)"
        )
    if secret is not None and any(c.isspace() for c in secret):
        raise ValueError("a token must not contain spaces")
    secret = secret or new_secret()
    expires = datetime.now(UTC) + timedelta(days=days)
    issued = TokenIssued(
        token_id=f"tok_{secrets.token_hex(6)}",
        user_id=user_id,
        is_admin=is_admin,
        expires_at=expires.isoformat(timespec="seconds"),
        secret_sha256=secret_digest(secret),
        by=by,
    )
    return secret, issued
