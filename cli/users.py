"""``gpuledger user set-share|set-priority|set-caps|show`` and ``gpuledger users``: fair-share accounts.

Like ``gpuledger token``, these append to (or read) the ledger file where the server runs; a live
server notices the new ``user.policy_set`` event within a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.common import add_db_option, db_for_write, existing_db
from cli.notify import register_set_notify
from ledger.domain.clock import now_us
from ledger.domain.errors import LedgerError
from ledger.store import commands
from ledger.store.store import EventStore, Write
from projections.fairshare import factors_by_user, live_usage
from projections.live import open_store
from projections.views import Views

ACTOR = "cli"


def _cap(text: str) -> int | None:
    """A cap: a whole number (0: unlimited) or ``default`` (the global limit)."""
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number (0: unlimited) or 'default'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a cap is 0 (unlimited) or more")
    return value


def register(subparsers: Any) -> None:
    user = subparsers.add_parser("user", help="a user's fair share: share, priority level, caps, usage")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    share = sub.add_parser("set-share", help="set a user's share (default 1): their part of the GPUs under contention")
    share.add_argument("user")
    share.add_argument("share", type=float)
    share.set_defaults(func=run_set, field="share")
    priority = sub.add_parser("set-priority", help="the highest priority level the user's jobs get (default 0)")
    priority.add_argument("user")
    priority.add_argument("priority", type=int)
    priority.set_defaults(func=run_set, field="priority")
    caps = sub.add_parser("set-caps", help="per-user caps overriding the global limits")
    caps.add_argument("user")
    for option, what in (("--max-active-jobs", "jobs pending or running at once"), ("--max-gpus", "GPUs held at once")):
        caps.add_argument(option, type=_cap, default=argparse.SUPPRESS, metavar="N|default", help=what)
    caps.set_defaults(func=run_set, field="caps")
    show = sub.add_parser("show", help="one user's account: policy, decayed usage, fair-share factor")
    show.add_argument("user")
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.set_defaults(func=run_show)
    for parser in (share, priority, caps):
        parser.add_argument("--reason", default="", help="why (kept in the ledger)")
    register_set_notify(sub)  # the caller's own, through the server (cli/notify.py)
    users = subparsers.add_parser("users", help="every user's fair-share account")
    users.add_argument("--json", action="store_true", help="one JSON document")
    users.set_defaults(func=run_users)
    for parser in (share, priority, caps, show, users):
        add_db_option(parser)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    if args.field != "caps":
        return {args.field: getattr(args, args.field)}
    # The cap options default to "not given" (SUPPRESS): 'default' gives None, which is a change.
    changes = {name: getattr(args, name) for name in ("max_active_jobs", "max_gpus") if hasattr(args, name)}
    if not changes:
        raise ValueError("give --max-active-jobs or --max-gpus (a number, 0 for unlimited, or 'default')")
    return changes


def _execute(store: EventStore[Views], write: Write) -> None:
    result = store.execute([write])[0]
    if isinstance(result, LedgerError):
        raise result


def account_row(views: Views, user_id: str, now: int) -> dict[str, Any]:
    """What ``show`` prints for one user (the same fields as the API's accounts)."""
    queued = [views.jobs[j] for j in views.queued]
    factors = factors_by_user(queued, views.on_nodes(), views.shares, now, views.half_life_s)
    account = views.shares.get(user_id)
    running = [j for j in views.on_nodes() if j.user_id == user_id]
    return {
        "user_id": user_id,
        "share": account.share if account else 1.0,
        "priority": account.priority if account else 0,
        "max_active_jobs": account.max_active_jobs if account else None,
        "max_gpus": account.max_gpus if account else None,
        "usage_gpu_hours": round(live_usage(account, running, now, views.half_life_s) / 3600, 6),
        "fairshare": round(factors[user_id], 6) if user_id in factors else None,
        "reason": account.reason if account else None,
    }


def is_known(views: Views, user_id: str) -> bool:
    """A user the ledger has seen: a token (even revoked) or a job. A policy alone does not count: it may
    have been set for a typo."""
    return user_id in views.users or any(t.user_id == user_id for t in views.tokens.values())


def run_set(args: argparse.Namespace) -> int:
    store = open_store(db_for_write(args))
    try:
        if not is_known(store.published, args.user):  # a typo ("alcie") would silently get a policy of its own
            print(
                f"gpuledger: warning: user {args.user!r} has no token and no jobs (a typo?); "
                "the policy is set anyway and applies once they submit",
                file=sys.stderr,
            )
        _execute(store, commands.set_user_policy(args.user, by=ACTOR, reason=args.reason, **_changes(args)))
        _print([account_row(store.published, args.user, now_us())], as_json=False)
    finally:
        store.close()
    return 0


def _print(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows[0] if len(rows) == 1 else {"users": rows}, indent=2))
        return
    header = f"{'USER':<16} {'SHARE':>7} {'PRIO':>4} {'MAX JOBS':>8} {'MAX GPUS':>8}"
    print(f"{header} {'GPU-H DECAYED':>16} {'FACTOR':>7}")
    for row in rows:
        caps = ["-" if row[k] is None else str(row[k]) for k in ("max_active_jobs", "max_gpus")]
        factor = "-" if row["fairshare"] is None else f"{row['fairshare']:.3f}"
        print(
            f"{row['user_id']:<16} {row['share']:>7g} {row['priority']:>4} {caps[0]:>8} {caps[1]:>8} "
            f"{row['usage_gpu_hours']:>16.4f} {factor:>7}"
        )


def run_show(args: argparse.Namespace) -> int:
    store = open_store(existing_db(args))
    try:
        views = store.published
        if not is_known(views, args.user) and args.user not in views.shares:
            print(
                f"gpuledger: no user {args.user!r}: no token, no jobs, no policy (gpuledger users lists them)",
                file=sys.stderr,
            )
            return 1
        _print([account_row(views, args.user, now_us())], as_json=args.json)
    finally:
        store.close()
    return 0


def run_users(args: argparse.Namespace) -> int:
    store = open_store(existing_db(args))
    try:
        views, now = store.published, now_us()
        users = sorted(set(views.users) | set(views.shares))
        rows = [account_row(views, u, now) for u in users]
        if args.json:
            print(json.dumps({"half_life_s": views.half_life_s, "users": rows}, indent=2))
        else:
            _print(rows, as_json=False)
    finally:
        store.close()
    return 0
