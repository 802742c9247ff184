"""``gpuledger jobs`` and ``gpuledger nodes``: tables (rich), JSON, and ``jobs --watch`` fed by events."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.arrays import grouped
from cli.remote import EXIT_DETACHED, add_client_options, async_client_from, client_from, out, print_json, reason_words
from gpuledger import AsyncClient, JobStatus, NodeInfo, RateLimited

ACTIVE = ("pending", "running")
SHORT_ID = 10  # characters of a job id shown in tables: the ULID's time part, unique enough to type
CAPS = {"USER": 10, "NODE": 10, "COMPETITION": 14}  # widest a column may be (longer names end in …)
JUSTIFY: dict[str, Any] = {"ELAPSED": "right"}
STATUS_STYLE = {"running": "green", "pending": "yellow", "failed": "red", "cancelled": "dim", "completed": "cyan"}
REFRESH_EVERY_S = 2.0  # at most one refresh per this much time, however many events arrive


def register(subparsers: Any) -> None:
    jobs = subparsers.add_parser("jobs", help="your pending and running jobs (--all: finished ones too)")
    jobs.add_argument("--all", action="store_true", help="also completed, failed and cancelled jobs")
    jobs.add_argument("--status", choices=("pending", "running", "completed", "failed", "cancelled"))
    jobs.add_argument("--user", help="admins: only this user's jobs")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    jobs.add_argument("--watch", "-w", action="store_true", help="keep the table up to date (Ctrl+C ends)")
    jobs.add_argument("--expand", action="store_true", help="an array's tasks one a line (default: one line an array)")
    add_client_options(jobs)
    jobs.set_defaults(func=run_jobs)

    nodes = subparsers.add_parser("nodes", help="the GPU nodes: state, current job, queue")
    add_client_options(nodes)
    nodes.set_defaults(func=run_nodes)


def _picked(jobs: list[JobStatus], args: argparse.Namespace) -> list[JobStatus]:
    picked = jobs if args.all or args.status else [j for j in jobs if j.status in ACTIVE]
    return picked if getattr(args, "expand", True) or getattr(args, "json", False) else grouped(picked)


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id cut to ``SHORT_ID`` characters, or more where two listed ids would share the cut (the
    server takes any unique prefix, in any case)."""
    length = SHORT_ID
    while length < 26 and len({job_id[:length] for job_id in ids}) < len(set(ids)):
        length += 1
    return {job_id: job_id[:length] for job_id in ids}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    begun = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ended = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
    return max(0.0, (ended - begun).total_seconds())


def elapsed(job: JobStatus) -> str:
    """How long the job has run (or ran): ``45s``, ``12m03s``, ``2h05m``, ``3d04h``; empty if it never started."""
    seconds = _seconds(job.started_at, job.completed_at if job.is_terminal else None)
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _why(job: JobStatus) -> str:
    if job.phase == "array":  # an array's tasks on one line (cli.arrays.grouped): their counts
        return job.reason or ""
    if job.status == "pending" and job.queue_position is not None:
        where = f"#{job.queue_position} {job.reason or ''}".strip()
        return where + (f", ETA {job.estimated_start_at[11:16]}Z" if job.estimated_start_at else "")
    if job.is_terminal:
        return reason_words(job)
    return job.reason or job.phase


def jobs_table(jobs: list[JobStatus], title: str = "jobs") -> Table:
    """One line a job, within the console's width (80 in a pipe), plain columns; colour on a terminal
    only. Widths are set here, the reason taking what is left: rich's own
    fitting drops whole columns first."""
    terminal = out.is_terminal
    table = Table(
        title=title if terminal else None,
        title_justify="left",
        box=None,  # no box drawing: ``awk``/``cut`` read the columns, and 80 columns hold more
        pad_edge=False,
        header_style="bold" if terminal else "",
    )
    ids = short_ids([job.job_id for job in jobs])
    ids.update({job.job_id: job.job_id for job in jobs if job.phase == "array"})  # whole: status ARRAY takes it
    rows = [_row(job, ids[job.job_id]) for job in jobs]
    names = ["ID", "STATUS", "ELAPSED", "USER", "NODE", "COMPETITION"]
    if len({job.user_id for job in jobs}) <= 1:  # one's own jobs: no user column
        names.remove("USER")
        rows = [row[:3] + row[4:] for row in rows]
    widths = [
        min(CAPS.get(name, 99), max([len(name), *(len(row[k].plain) for row in rows)])) for k, name in enumerate(names)
    ]
    overhead = 2 * len(names)  # the padding between columns
    for name, width in zip(names, widths, strict=True):
        table.add_column(name, width=width, no_wrap=True, overflow="ellipsis", justify=JUSTIFY.get(name, "left"))
    table.add_column("WHY", width=max(10, out.width - sum(widths) - overhead), no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    return table


def _row(job: JobStatus, short_id: str) -> list[Text]:
    """ID, STATUS, ELAPSED, USER, NODE, COMPETITION, WHY."""
    status = Text(job.status, style=STATUS_STYLE.get(job.status, ""))
    cells = [short_id, job.status, elapsed(job), job.user_id, job.node or "", job.competition_id, _why(job)]
    return [status if k == 1 else Text(cell) for k, cell in enumerate(cells)]


def nodes_table(nodes: list[NodeInfo]) -> Table:
    table = Table(title="nodes", title_justify="left")
    for column in ("NODE", "STATE", "SLOTS", "CURRENT JOB", "ELAPSED / EXPECTED", "QUEUE", "WAIT"):
        table.add_column(column)
    ids = short_ids([node.current_job.job_id for node in nodes if node.current_job and node.current_job.job_id])
    for node in nodes:
        job = node.current_job
        current = (ids[job.job_id] if job.job_id else "(another user's)") if job else ""
        elapsed = f"{job.elapsed_s or 0:.0f}s / {job.expected_time or 0}s" if job else ""
        why = node.down_reason or node.drain_reason
        state = node.status + (f" ({why})" if why else "")
        table.add_row(
            node.name,
            state,
            f"{node.running}/{node.slots}",
            current,
            elapsed,
            str(node.queue_length),
            f"{node.total_wait_time:.0f}s",
        )
    return table


def run_nodes(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        nodes = client.nodes()
    if args.json:
        print_json({"nodes": nodes})
    else:
        out.print(nodes_table(nodes))
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    if args.watch:
        try:
            asyncio.run(_watch_jobs(args))
        except KeyboardInterrupt:
            return EXIT_DETACHED
        return 0
    with client_from(args) as client:
        jobs = _picked(client.jobs(user_id=args.user, status=args.status, limit=args.limit), args)
    if args.json:
        print_json({"jobs": jobs})
    else:
        out.print(jobs_table(jobs))
    return 0


async def fetch_politely(call: Any) -> Any:
    """One refresh; a 429 is waited out (watching commands wait and retry by themselves)."""
    while True:
        try:
            return await call()
        except RateLimited as e:
            await asyncio.sleep(e.retry_after or 1.0)


async def refreshed_by_events(client: AsyncClient, redraw: Any) -> None:
    """Call ``redraw`` now, then after ledger events (bursts coalesced over REFRESH_EVERY_S), never on a timer."""
    changed = asyncio.Event()

    async def listen() -> None:
        async for _ in client.events(after=await _head(client)):
            changed.set()

    listener = asyncio.create_task(listen())
    try:
        while True:
            await redraw()
            waiter = asyncio.create_task(changed.wait())
            done, _ = await asyncio.wait({waiter, listener}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done:
                waiter.cancel()
                listener.result()  # the stream failed for good: say why
                return
            await asyncio.sleep(REFRESH_EVERY_S)
            changed.clear()
    finally:
        listener.cancel()


async def _head(client: AsyncClient) -> int:
    """Start the event stream at "now": the newest position among my newest job's events, else 0."""
    jobs = await fetch_politely(lambda: client.jobs(limit=1))
    if not jobs:
        return 0
    history = await client.job_events(jobs[0].job_id)
    return history[-1].position if history else 0


async def _watch_jobs(args: argparse.Namespace) -> None:
    async with async_client_from(args) as client:
        with Live(jobs_table([]), console=out, auto_refresh=False) as live:

            async def redraw() -> None:
                jobs = await fetch_politely(
                    lambda: client.jobs(user_id=args.user, status=args.status, limit=args.limit)
                )
                live.update(jobs_table(_picked(jobs, args)), refresh=True)

            await refreshed_by_events(client, redraw)
