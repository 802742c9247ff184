"""The start-up sweep: what finished jobs left behind after a crash (live copies, node workdirs).

A ``kill -9`` between a job's ``job.finished`` and its cleanup leaves its workdir on the node and its
live output copy here; the ledger says the job is finished, so both can go.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
from collections.abc import Container
from pathlib import Path

import structlog

from executors import protocol as wp
from executors.errors import ExecutorError
from executors.runner import NodeRunner
from projections.views import Views

log = structlog.get_logger()


class FinishedJobs:
    """``name in finished``: whether the ledger says job ``name`` is finished (a lookup per leftover,
    not a set of every finished job: most of those are on disk only)."""

    def __init__(self, views: Views) -> None:
        self.views = views

    def __contains__(self, name: object) -> bool:
        job = self.views.jobs.get(name) if isinstance(name, str) else None
        return job is not None and job.is_terminal


def job_of_entry(name: str) -> str:
    """The job a workdir or live copy belongs to (a retry's is ``<job id>.<attempt>``)."""
    return name.partition(".")[0]


def sweep_live(live_root: Path, finished: Container[str]) -> int:
    """Remove the live output copies of finished jobs (their blobs hold the output)."""
    if not live_root.is_dir():
        return 0
    leftovers = [entry for entry in live_root.iterdir() if job_of_entry(entry.name) in finished]
    for entry in leftovers:
        shutil.rmtree(entry, ignore_errors=True)
    return len(leftovers)


async def sweep_node(runner: NodeRunner, finished: Container[str]) -> int:
    """Remove finished jobs' workdirs on one node; a leftover's process group is killed first, in
    case a job lost with its node still ran there."""
    jobs_root = f"{runner.remote_root.rstrip('/')}/jobs"
    transport = runner.transport
    _, out, _ = await transport.run(f"ls -1 {shlex.quote(jobs_root)} 2>/dev/null || true", timeout=30)
    leftovers = [name for name in out.decode(errors="replace").split() if job_of_entry(name) in finished]
    for name in leftovers:
        workdir = runner.workdir(name)
        await transport.run(wp.cancel_command(transport.python, workdir), timeout=runner.settings.cancel_grace_s + 30)
        await transport.remove_tree(workdir)
    return len(leftovers)


async def sweep(views: Views, runners: dict[str, NodeRunner], live_root: Path) -> None:
    """The whole sweep; a node that does not answer keeps its leftovers until the next start."""
    finished = FinishedJobs(views)
    live = await asyncio.to_thread(sweep_live, live_root, finished)
    workdirs = 0
    for name, runner in runners.items():
        with contextlib.suppress(ExecutorError, TimeoutError, OSError):
            workdirs += await sweep_node(runner, finished)
            continue
        log.warning("sweep.node_skipped", node=name)
    log.info("sweep.done", live_dirs=live, workdirs=workdirs)
