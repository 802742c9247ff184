"""``gpuledger quota``: today's submissions and GPU-hours, used and left, and when they reset; stored artifact bytes."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from cli.remote import add_client_options, client_from, out, print_json


def register(subparsers: Any) -> None:
    quota = subparsers.add_parser("quota", help="your daily quotas: used, left, when they reset")
    quota.add_argument("--user", help="admins: this user's quotas")
    add_client_options(quota)
    quota.set_defaults(func=run_quota)


def _amount(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def run_quota(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        status = client.quota(args.user)
    if args.json:
        print_json(status)
        return 0
    table = Table(title=f"quota of {status.user_id}, per {status.window}", title_justify="left")
    for column in ("QUOTA", "USED", "LIMIT", "LEFT", "RESETS AT"):
        table.add_column(column)
    for quota in status.quotas:
        limit = _amount(quota.limit or None)
        table.add_row(quota.quota, f"{quota.used:g}", limit, _amount(quota.left), (quota.resets_at or "")[:19] + "Z")
    out.print(table)
    artifact_limit = _amount(status.artifact_quota_bytes or None)
    out.print(
        f"artifacts stored: {status.artifact_bytes} bytes of {artifact_limit} (ARTIFACT_QUOTA_BYTES, not per day)"
    )
    out.print("Jobs that fail for the platform's reasons (node lost, dispatch or sandbox failure) are not counted.")
    return 0
