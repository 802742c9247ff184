"""``gpuledger dashboard``: a live terminal view of the nodes, the queue and your jobs, redrawn on events."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.text import Text

from cli.listing import fetch_politely, jobs_table, nodes_table, refreshed_by_events
from cli.remote import EXIT_DETACHED, add_client_options, async_client_from, out
from gpuledger.models import to_builtins


def register(subparsers: Any) -> None:
    dashboard = subparsers.add_parser("dashboard", help="live view: nodes, queue with reasons and ETAs, your jobs")
    dashboard.add_argument("--limit", type=int, default=15, help="recent jobs shown (default 15)")
    add_client_options(dashboard)
    dashboard.set_defaults(func=run_dashboard)


async def _dashboard(args: argparse.Namespace) -> None:
    async with async_client_from(args) as client:
        with Live(Text("connecting..."), console=out, auto_refresh=False, screen=False) as live:

            async def redraw() -> None:
                nodes = await fetch_politely(client.nodes)
                jobs = await fetch_politely(lambda: client.jobs(limit=max(args.limit, 50)))
                queue = sorted(
                    (j for j in jobs if j.status == "pending"),
                    key=lambda j: (j.queue_position is None, j.queue_position),
                )
                recent = [j for j in jobs if j.status != "pending"][: args.limit]
                if args.json:
                    print(json.dumps(to_builtins({"nodes": nodes, "queue": queue, "jobs": recent})), flush=True)
                    return
                live.update(
                    Group(
                        nodes_table(nodes),
                        jobs_table(queue, "queue"),
                        jobs_table(recent, "jobs"),
                        Text("updated on every ledger event; Ctrl+C leaves", style="dim"),
                    ),
                    refresh=True,
                )

            await refreshed_by_events(client, redraw)


def run_dashboard(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_dashboard(args))
    except KeyboardInterrupt:
        return EXIT_DETACHED
    return 0
