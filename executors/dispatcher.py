"""The scheduler: one global queue ordered by the fair-share score, dispatched to free slots.

The order is ``projections.fairshare.rank`` at the moment of each pass (docs/design.md, "Fair share");
jobs of a user at their GPU cap (``max_gpus``) are skipped until the user's running jobs end.

Woken by ledger commits (no polling of the database). The dispatch write re-checks inside the
writer's transaction that the slots are still free and the node usable, so a node never holds more
than ``slots`` GPUs' worth of jobs and a job is never dispatched twice for one attempt.

Placement (docs/design.md): first fit in queue order, all of a job's GPUs on one node. A job that
fits nowhere yet reserves the node closest to fitting it; later jobs may only use other nodes, so a
large job is never starved by a stream of small ones (the reserved node drains until it fits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from ledger import commands
from ledger.attempts import attempt_key
from ledger.clock import now_us
from ledger.errors import DomainError
from ledger.jobs import JobState
from ledger.nodes import fleet_has_gpus, takes
from ledger.shares import Weights
from ledger.writer import Ledger
from projections.plan import capped
from projections.views import Views

log = structlog.get_logger()


class JobRunner(Protocol):
    """What the dispatcher needs of a node's runner (an SSH or local node, or a Slurm cluster)."""

    def workdir(self, attempt_key: str) -> str: ...

    def attach(self, job_id: str, *, fresh: bool = False) -> None: ...

    def fenced_slots(self) -> set[int]: ...

    async def stop(self) -> None: ...


def free_gpus(views: Views, runners: Mapping[str, JobRunner]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Free slots per usable node, least-loaded node first, then configuration order; and every
    usable node's size."""
    ranked: list[tuple[float, int, str, list[int]]] = []
    sizes: dict[str, int] = {}
    for order, node in enumerate(views.nodes.values()):
        if node.name not in runners or not node.ready:
            continue
        sizes[node.name] = node.slots
        # A lost job's slots stay taken until it is confirmed dead on the node (NodeRunner.fencing).
        used = commands.busy_slots(views, node.name) | runners[node.name].fenced_slots()
        free = [slot for slot in range(node.slots) if slot not in used]
        if free:
            ranked.append((len(used) / node.slots, order, node.name, free))
    ranked.sort()
    return {name: free for _, _, name, free in ranked}, sizes


def place(
    queue: list[JobState],
    free: dict[str, list[int]],
    sizes: dict[str, int],
    gpu_less: frozenset[str] = frozenset(),
    fleet_gpus: bool = True,
) -> tuple[JobState, str, list[int]] | None:
    """The next (job, node, slots) by first fit in queue order, with one node reserved per job that
    does not fit yet (the one with most free GPUs among those big enough). ``gpu_less``: the nodes
    without GPUs, where only CPU-only jobs go (``ledger.nodes.takes``)."""
    reserved: set[str] = set()
    for job in queue:
        need = job.slots_needed
        allowed = {n for n in sizes if n not in reserved and takes(job.gpus, n not in gpu_less, fleet_gpus)}
        fits = [name for name, slots in free.items() if name in allowed and len(slots) >= need]  # least loaded first
        if fits:
            return job, fits[0], free[fits[0]][:need]
        big_enough = [name for name in sizes if name in allowed and sizes[name] >= need]
        if big_enough:
            reserved.add(max(big_enough, key=lambda name: len(free.get(name, []))))
            if len(reserved) == len(sizes):
                return None
    return None


def dispatch_order(views: Views, now: int, weights: Weights) -> list[JobState]:
    """The queue as the dispatcher walks it: by score, less the jobs their user's GPU cap holds back."""
    ranked = views.ranked(now, weights)
    held = capped(views, ranked)
    return [r.job for r in ranked if r.job.job_id not in held]


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger[Views],
        runners: Mapping[str, JobRunner],
        weights: Weights | None = None,
        hold: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``hold``: why no job may start now (e.g. the ledger's disk below its floor), or None."""
        self.ledger = ledger
        self.runners = runners
        self.weights = weights or Weights()
        self.hold = hold
        self.held: str | None = None
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

    def _holding(self) -> bool:
        held = self.hold()
        if held != self.held:  # said once when it starts and once when it ends, not every pass
            if held:
                log.warning("dispatch.held", reason=held)
            else:
                log.info("dispatch.resumed")
            self.held = held
        return held is not None

    async def dispatch_ready(self) -> int:
        dispatched = 0
        while True:
            if self._holding():
                return dispatched
            views = self.ledger.views
            free, sizes = free_gpus(views, self.runners)  # first: cheap, and no slot means no sort of the queue
            if not free or not views.queued:
                return dispatched
            nodes = list(views.nodes.values())
            gpu_less = frozenset(n.name for n in nodes if not n.has_gpus)
            placed = place(dispatch_order(views, now_us(), self.weights), free, sizes, gpu_less, fleet_has_gpus(nodes))
            if placed is None:
                return dispatched
            job, node, slots = placed
            runner = self.runners[node]
            try:
                await self.ledger.write(
                    commands.dispatch_job(
                        job.job_id,
                        node=node,
                        slots=slots,
                        workdir=runner.workdir(attempt_key(job.job_id, job.attempt + 1)),
                    )
                )
            except DomainError as e:
                log.info("job.dispatch_refused", job_id=job.job_id, node=node, error=str(e))
                await asyncio.sleep(0.05)
                continue
            log.info("job.dispatched", job_id=job.job_id, user_id=job.user_id, node=node, slots=slots)
            runner.attach(job.job_id, fresh=True)
            dispatched += 1
