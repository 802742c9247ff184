"""``gpuledger usage``: GPU-hours held vs used, per user and per job, of the jobs that ended lately."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from cli.remote import add_client_options, client_from, out, print_json
from gpuledger.models import GpuUsage


def register(subparsers: Any) -> None:
    usage = subparsers.add_parser("usage", help="GPU-hours held vs used, peak vs card memory (--user, --since)")
    usage.add_argument("--user", help="admins: this user's usage (default: yours; admins: everyone's)")
    usage.add_argument("--since", default="7d", help="a duration back (7d, 12h) or an ISO time (default 7d)")
    usage.add_argument("--limit", type=int, default=20, help="the largest jobs shown (default 20)")
    add_client_options(usage)
    usage.set_defaults(func=run_usage)


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _memory(used: int | None, card: int | None) -> str:
    return "-" if used is None else f"{used}/{card} MiB"


def user_table(usage: GpuUsage) -> Table:
    table = Table(title=f"GPU use of jobs ended since {(usage.since or '')[:19]}Z", title_justify="left")
    for column in ("USER", "JOBS", "GPU JOBS", "GPU-H HELD", "GPU-H USED", "UNMEASURED"):
        table.add_column(column)
    for u in usage.users:
        table.add_row(
            u.user_id,
            str(u.jobs),
            str(u.gpu_jobs),
            _hours(u.gpu_hours_held),
            _hours(u.gpu_hours_used),
            _hours(u.gpu_hours_unmeasured),
        )
    return table


def job_table(usage: GpuUsage) -> Table:
    table = Table(title=f"largest jobs ({len(usage.jobs)} of {usage.jobs_total})", title_justify="left")
    for column in ("JOB", "USER", "STATUS", "GPUS", "GPU-H HELD", "GPU-H USED", "MEAN UTIL", "PEAK MEM"):
        table.add_column(column)
    for j in usage.jobs:
        util = "-" if j.mean_util is None else f"{j.mean_util:g}%"
        table.add_row(
            j.job_id,
            j.user_id,
            j.status,
            str(j.gpus),
            _hours(j.gpu_hours_held),
            _hours(j.gpu_hours_used),
            util,
            _memory(j.peak_mem_mib, j.card_mem_mib),
        )
    return table


def run_usage(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        usage = client.gpu_usage(user_id=args.user, since=args.since, limit=args.limit)
    if args.json:
        print_json(usage)
        return 0
    out.print(user_table(usage))
    out.print(job_table(usage))
    out.print("Used: held time weighted by utilisation (jobs with telemetry); unmeasured: held without telemetry.")
    return 0
