"""The start-up sweep: what finished jobs left behind after a crash (live copies, node workdirs).

A ``kill -9`` between a job's ``job.finished`` and its cleanup leaves its workdir on the node and its
live output copy here; the ledger says the job is finished, so both can go. A job's files may resist
(deep trees, mode-000 directories): each leftover is tried on its own, what stays is logged, and the
sweep runs again every ``SWEEP_RETRY_S`` until nothing is left.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Container
from pathlib import Path

import structlog

from executors import protocol as wp
from executors.runner import NodeRunner
from projections.views import Views

log = structlog.get_logger()
SWEEP_RETRY_S = 300.0


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


def sweep_live(live_root: Path, finished: Container[str]) -> tuple[int, int]:
    """Remove the live output copies of finished jobs (their blobs hold the output): (removed, kept)."""
    if not live_root.is_dir():
        return 0, 0
    removed = kept = 0
    for entry in live_root.iterdir():
        if job_of_entry(entry.name) not in finished:
            continue
        try:
            shutil.rmtree(entry)
            removed += 1
        except Exception as e:  # one stubborn entry must not stop the sweep
            log.warning("sweep.kept", path=str(entry), error=repr(e))
            kept += 1
    return removed, kept


async def sweep_node(runner: NodeRunner, finished: Container[str]) -> tuple[int, int]:
    """Remove finished jobs' workdirs on one node; a leftover's process group is killed first, in
    case a job lost with its node still ran there. (removed, kept)"""
    jobs_root = f"{runner.remote_root.rstrip('/')}/jobs"
    transport = runner.transport
    _, out, _ = await transport.run(f"ls -1 {shlex.quote(jobs_root)} 2>/dev/null || true", timeout=30)
    # A lost attempt still held (node.fence_required) is its fence's: only a confirmed kill frees it.
    state = runner.ledger.views.nodes.get(runner.node)
    fencing = {fence.attempt_key for fence in state.fences} if state is not None else set()
    names = out.decode(errors="replace").split()
    leftovers = [name for name in names if job_of_entry(name) in finished and name not in fencing]
    removed = kept = 0
    for name in leftovers:
        workdir = runner.workdir(name)
        try:
            cancel = wp.cancel_command(transport.python, workdir)
            await transport.run(cancel, timeout=runner.settings.runner.cancel_grace_s + 30)
            await transport.remove_tree(workdir)
            removed += 1
        except Exception as e:  # logged, and tried again at the next pass
            log.warning("sweep.kept", node=runner.node, path=workdir, error=repr(e))
            kept += 1
    return removed, kept


async def sweep_once(views: Views, runners: dict[str, NodeRunner], live_root: Path) -> int:
    """One pass over every leftover; how many stayed (entries kept, plus nodes that did not answer)."""
    finished = FinishedJobs(views)
    live, kept = await asyncio.to_thread(sweep_live, live_root, finished)
    workdirs = 0
    for name, runner in runners.items():
        try:
            removed, stayed = await sweep_node(runner, finished)
        except Exception as e:  # a node that does not answer keeps its leftovers for now
            log.warning("sweep.node_skipped", node=name, error=repr(e))
            kept += 1
            continue
        workdirs += removed
        kept += stayed
    log.info("sweep.done", live_dirs=live, workdirs=workdirs, kept=kept)
    return kept


async def sweep(views: Views, runners: dict[str, NodeRunner], live_root: Path, retry_s: float = SWEEP_RETRY_S) -> None:
    """The whole sweep, again every ``retry_s`` while anything stays."""
    while True:
        if not await sweep_once(views, runners, live_root):
            return
        await asyncio.sleep(retry_s)
