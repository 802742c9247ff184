"""Following one job live: its stdout and stderr as they are written, and its phase changes.

Three streams at once (stdout log, stderr log, the ledger's event stream), each resumable; the follow
ends when both logs have sent their ``end`` event, which the server sends once the job is terminal.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from cli.remote import err, phase_line
from cli.terminal import shown
from gpuledger import AsyncClient, JobStatus, LedgerEvent
from ledger.store.reasons import finish_words


async def pump(client: AsyncClient, job_id: str, stream: str, sink: TextIO, *, raw: bool = False) -> None:
    async for chunk in client.logs(job_id, stream=stream, follow=True):
        sink.write(shown(chunk.text, raw=raw))  # the job's bytes never drive the terminal (cli/terminal.py)
        sink.flush()


def _describe(event: LedgerEvent) -> str | None:
    """A phase change worth a line; None for the ones the status fetch below describes better."""
    body = event.event
    match event.type:
        case "job.scanned":
            return f"scanned: {body.get('verdict')}"
        case "job.dispatched":
            return f"dispatched to {body.get('node')}"
        case "job.started":
            return f"started on {body.get('node') or 'its node'}"
        case "job.requeued":
            return f"requeued: {body.get('reason')}"
        case "job.retried":
            words = finish_words(str(body.get("reason")), exit_code=body.get("exit_code"), signal=body.get("signal"))
            return f"attempt {body.get('attempt')} ended ({words}): the job is retried"
        case "job.cancel_requested":
            return "cancel requested"
    return None


async def phases(client: AsyncClient, job_id: str, after: int) -> None:
    async for event in client.events(after=after):
        if event.job_id != job_id:
            continue
        if event.type == "job.queued":
            err.print(f"[dim]gpuledger: {phase_line(await client.status(job_id, waiting=True))}[/dim]")
        elif (line := _describe(event)) is not None:
            err.print(f"[dim]gpuledger: {line}[/dim]")


async def follow_job(client: AsyncClient, job_id: str, *, show_phases: bool = True, raw: bool = False) -> JobStatus:
    """Stream the job's output until it ends; returns its final status."""
    history = await client.job_events(job_id)
    status = await client.status(job_id, waiting=True)
    if show_phases and not status.is_terminal:
        err.print(f"[dim]gpuledger: {phase_line(status)}[/dim]")
    watcher = None
    if show_phases:
        watcher = asyncio.create_task(phases(client, job_id, history[-1].position if history else 0))
    try:
        await asyncio.gather(
            pump(client, job_id, "stdout", sys.stdout, raw=raw), pump(client, job_id, "stderr", sys.stderr, raw=raw)
        )
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    return await client.status(job_id, waiting=True)
