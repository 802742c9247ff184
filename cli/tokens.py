"""``gpuledger token create|list|revoke|revoke-user``: token events appended to the ledger file.

These run beside a live server on the same file; the server notices the new events within a second.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from typing import Any

from cli.common import add_db_option, db_for_write, existing_db
from ledger.domain.clock import iso
from ledger.domain.errors import LedgerError, NotFound
from ledger.domain.tokens import mint, secret_digest
from ledger.store import commands
from ledger.store.settings import load_settings
from ledger.store.store import EventStore, Write
from projections.live import open_store
from projections.token_usage import last_used
from projections.views import Views

ACTOR = "cli"
STRONG_LENGTH = 16  # shorter admin-chosen tokens are accepted (from 14 characters) with a warning


def register(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="manage API tokens")
    sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="issue a token (revokes the user's previous one)")
    create.add_argument("user")
    create.add_argument("token", nargs="?", help="the token value (default: a strong random one, shown once)")
    create.add_argument("--days", type=int, default=30, help="validity in days, 1..30 (default 30)")
    create.add_argument("--admin", action="store_true", help="admin rights (all jobs, dashboard, drain)")
    create.set_defaults(func=run_create)
    listing = sub.add_parser("list", help="tokens with expiry and last use")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(func=run_list)
    revoke = sub.add_parser("revoke", help="revoke one token (by its value or its id)")
    revoke.add_argument("token")
    revoke.set_defaults(func=run_revoke)
    revoke_user = sub.add_parser("revoke-user", help="revoke every token of a user")
    revoke_user.add_argument("user")
    revoke_user.set_defaults(func=run_revoke_user)
    for parser in (create, listing, revoke, revoke_user):
        add_db_option(parser)


def _execute(store: EventStore[Views], write: Write) -> None:
    result = store.execute([write])[0]
    if isinstance(result, LedgerError):
        raise result


def run_create(args: argparse.Namespace) -> int:
    max_days = load_settings(args.config).http.token_max_days
    try:
        secret, issued = mint(
            args.user, secret=args.token, days=args.days, is_admin=args.admin, by=ACTOR, max_days=max_days
        )
    except ValueError as e:
        print(f"gpuledger: {e}", file=sys.stderr)
        return 2
    if args.token is not None and len(args.token) < STRONG_LENGTH:
        print(
            f"gpuledger: warning: a {len(args.token)}-character token is easy to guess; "
            "omit TOKEN to get a generated one",
            file=sys.stderr,
        )
    store = open_store(db_for_write(args))
    _execute(store, commands.issue_token(issued))
    print(
        f"token {issued.token_id} for {issued.user_id}{' (admin)' if issued.is_admin else ''}, "
        f"expires {issued.expires_at}"
    )
    if args.token is None:
        print(f"\n    {secret}\n\nShown once: store it now. Only its SHA-256 is kept.")
    return 0


def days_left(expires: datetime, now: datetime) -> int:
    """Whole days still to go, rounded up: a fresh 30-day token shows 30, one expiring in an hour 1."""
    return max(0, math.ceil((expires - now).total_seconds() / 86400))


def run_list(args: argparse.Namespace) -> int:
    store = open_store(existing_db(args))
    used = last_used(store.conn)
    now = datetime.now(UTC)
    tokens = sorted(store.views.tokens.values(), key=lambda t: (t.user_id, t.created_at))
    tokens = [t for t in tokens if args.all or not t.revoked]
    if args.json:
        rows = [
            {
                "token_id": t.token_id,
                "user_id": t.user_id,
                "is_admin": t.is_admin,
                "created_at": iso(t.created_at),
                "expires_at": t.expires_at,
                "days_left": None if t.revoked else days_left(datetime.fromisoformat(t.expires_at), now),
                "last_used": iso(used.get(t.token_id)),
                "revoked": t.revoked,
            }
            for t in tokens
        ]
        print(json.dumps({"tokens": rows}, indent=2))
        return 0
    print(f"{'TOKEN ID':<18} {'USER':<16} {'ADMIN':<5} {'CREATED':<20} {'EXPIRES':<20} {'DAYS':>4}  LAST USED")
    for token in tokens:
        expires = datetime.fromisoformat(token.expires_at)
        days = days_left(expires, now) if not token.revoked else "-"
        state = " (revoked)" if token.revoked else (" (expired)" if expires <= now else "")
        print(
            f"{token.token_id:<18} {token.user_id:<16} {'yes' if token.is_admin else 'no':<5} "
            f"{(iso(token.created_at) or '')[:19]:<20} {token.expires_at[:19]:<20} {days!s:>4}  "
            f"{(iso(used.get(token.token_id)) or 'never')[:19]}{state}"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    store = open_store(existing_db(args))
    token_id = store.views.tokens_by_secret.get(secret_digest(args.token))
    if token_id is None and args.token in store.views.tokens:
        token_id = args.token
    if token_id is None:
        raise NotFound("no such token (give the token value or its id)")
    _execute(store, commands.revoke_token(token_id, by=ACTOR, reason="revoked by admin"))
    print(f"revoked {token_id}")
    return 0


def run_revoke_user(args: argparse.Namespace) -> int:
    store = open_store(existing_db(args))
    _execute(store, commands.revoke_user_tokens(args.user, by=ACTOR))
    print(f"revoked every token of {args.user}")
    return 0
