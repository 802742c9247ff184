"""The scheduler: one global queue ordered by (priority, submit position), dispatched to free slots.

Woken by ledger commits (no polling of the database). The dispatch write re-checks inside the
writer's transaction that the slot is still free and the node usable, so a node never runs more than
``slots`` jobs and a job is never dispatched twice for one attempt.
"""

from __future__ import annotations

import asyncio

import structlog

from executors.runner import NodeRunner
from ledger import commands
from ledger.errors import DomainError
from ledger.writer import Ledger
from projections.views import Views

log = structlog.get_logger()


def free_slots(views: Views, runners: dict[str, NodeRunner]) -> list[tuple[str, int]]:
    """(node, slot) pairs that can take a job now, least-loaded node first, then configuration order."""
    candidates: list[tuple[float, int, str, int]] = []
    for order, node in enumerate(views.nodes.values()):
        if node.name not in runners or node.status != "up":
            continue
        used = {views.jobs[j].slot for j in views.node_jobs.get(node.name, [])}
        free = [slot for slot in range(node.slots) if slot not in used]
        candidates.extend((len(used) / node.slots, order, node.name, slot) for slot in free)
    candidates.sort()
    return [(name, slot) for _, _, name, slot in candidates]


class Dispatcher:
    def __init__(self, ledger: Ledger[Views], runners: dict[str, NodeRunner]) -> None:
        self.ledger = ledger
        self.runners = runners
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def reattach(self) -> None:
        """After a restart: every job the ledger shows on a node goes back to that node's runner."""
        for name, job_ids in self.ledger.views.node_jobs.items():
            runner = self.runners.get(name)
            for job_id in list(job_ids):
                if runner is not None:
                    runner.attach(job_id)
                else:
                    log.warning("job.orphaned", job_id=job_id, node=name, why="node no longer configured")

    async def _loop(self) -> None:
        while True:
            seen = self.ledger.head
            try:
                await self.dispatch_ready()
            except Exception:
                log.exception("dispatcher.failed")
            # Wake on the next commit; the timeout re-checks nodes whose health changed off-ledger.
            await self.ledger.wait_beyond(seen, timeout=5.0)

    async def dispatch_ready(self) -> int:
        dispatched = 0
        while True:
            views = self.ledger.views
            slots = free_slots(views, self.runners)  # first: cheap, and no slot means no sort of the queue
            if not slots or not views.queued:
                return dispatched
            queue = views.queue()
            if not queue:
                return dispatched
            job, (node, slot) = queue[0], slots[0]
            runner = self.runners[node]
            try:
                await self.ledger.write(
                    commands.dispatch_job(job.job_id, node=node, slot=slot, workdir=runner.workdir(job.job_id))
                )
            except DomainError as e:
                log.info("job.dispatch_refused", job_id=job.job_id, node=node, error=str(e))
                await asyncio.sleep(0.05)
                continue
            log.info("job.dispatched", job_id=job.job_id, user_id=job.user_id, node=node, slot=slot)
            runner.attach(job.job_id, fresh=True)
            dispatched += 1
