"""Given past token events, when a token decide function runs, then these new events (or this refusal)."""

from __future__ import annotations

import pytest

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import AnyEvent, TokenIssued, TokenRevoked
from ledger.domain.tokens import TokenState, decide_issue, decide_revoke, evolve_token, mint, secret_digest


def issued(token_id: str, user_id: str = "alice", secret: str = "s3cret") -> TokenIssued:
    return TokenIssued(
        token_id=token_id,
        user_id=user_id,
        is_admin=False,
        expires_at="2030-01-01T00:00:00Z",
        secret_sha256=secret_digest(secret + token_id),
        by="admin",
    )


T1, T2 = issued("t1"), issued("t2")
REVOKED_T1 = TokenRevoked(token_id="t1", user_id="alice", by="admin", reason="leaked")


def given(*events: AnyEvent) -> dict[str, TokenState]:
    """Every token's state folded from ``events``, by token id."""
    tokens: dict[str, TokenState] = {}
    for index, event in enumerate(events, start=1):
        assert isinstance(event, TokenIssued | TokenRevoked)
        tokens[event.token_id] = evolve_token(tokens.get(event.token_id), event, at=index)
    return tokens


def test_secret_digest_is_sha256_hex() -> None:
    """Only the SHA-256 of a token's secret is ever stored."""
    assert secret_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_issue_first_token() -> None:
    """A user's first token is issued with nothing revoked."""
    assert decide_issue(T1, existing_for_user=[], secret_in_use=False) == [T1]


def test_issue_revokes_previous_live_tokens() -> None:
    """A new token revokes the user's previous live one first (one live token per user)."""
    events = decide_issue(T2, existing_for_user=list(given(T1).values()), secret_in_use=False)
    assert events == [TokenRevoked(token_id="t1", user_id="alice", by="admin", reason="replaced by a new token"), T2]
    tokens = given(T1, *events)
    assert (tokens["t1"].revoked, tokens["t2"].revoked) == (True, False)


def test_issue_does_not_revoke_already_revoked() -> None:
    """Tokens already revoked are not revoked a second time."""
    existing = list(given(T1, REVOKED_T1).values())
    assert decide_issue(T2, existing_for_user=existing, secret_in_use=False) == [T2]


def test_issue_with_secret_in_use_refused() -> None:
    """A token value that another token already uses is refused."""
    with pytest.raises(InvalidTransition, match="already in use"):
        decide_issue(T2, existing_for_user=[], secret_in_use=True)


def test_revoke_live_token() -> None:
    """Revoking a live token records who revoked it and why."""
    events = decide_revoke(given(T1)["t1"], by="admin", reason="leaked")
    assert events == [REVOKED_T1]
    revoked = given(T1, *events)["t1"]
    assert (revoked.revoked, revoked.revoked_at) == (True, 2)


def test_revoke_twice_refused() -> None:
    """An already revoked token cannot be revoked again."""
    with pytest.raises(InvalidTransition, match="already revoked"):
        decide_revoke(given(T1, REVOKED_T1)["t1"], by="admin")


def test_generated_secrets_never_start_with_a_dash() -> None:
    """A drawn secret is usable as ``--token SECRET`` (one in 64 would start with ``-`` otherwise)."""
    secrets = [mint("alice", secret=None, days=1, is_admin=False, by="admin")[0] for _ in range(2000)]
    assert not [s for s in secrets if s.startswith("-")]
    assert len(set(secrets)) == len(secrets)
