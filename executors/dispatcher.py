"""The scheduler: one global queue ordered by the fair-share score, dispatched to free slots.

The order is ``projections.fairshare.rank`` at the moment of each pass (docs/design.md, "Fair share");
jobs of a user at their GPU cap (``max_gpus``) are skipped until the user's running jobs end.

Woken by ledger commits (no polling of the database). The dispatch write re-checks inside the
writer's transaction that the slots are still free and the node usable, so a node never holds more
than ``slots`` GPUs' worth of jobs and a job is never dispatched twice for one attempt.

Placement (docs/design.md, ``projections.placement``): the one the queue plan shows. In queue order,
all of a job's GPUs on one node, where they free first (on a tie the less loaded node); a job that
cannot start now is booked on the node where it will, and the slots it holds there take no later
job, so a large job is never starved by a stream of small ones. The first job that starts now goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from ledger.domain.attempts import attempt_key
from ledger.domain.clock import now_us
from ledger.domain.errors import DomainError
from ledger.domain.jobs import JobState
from ledger.domain.shares import Weights
from ledger.store import arrays as store_arrays
from ledger.store import commands
from ledger.store import dependencies as store_dependencies
from ledger.store.writer import Ledger
from projections.placement import Fleet, gpu_kinds, next_start, node_times, to_release
from projections.plan import capped
from projections.views import Views

log = structlog.get_logger()


class JobRunner(Protocol):
    """What the dispatcher needs of a node's runner (any executor's: executors/interface.py)."""

    def workdir(self, attempt_key: str) -> str: ...

    def attach(self, job_id: str, *, fresh: bool = False) -> None: ...

    def fenced_slots(self) -> set[int]: ...

    def resume_fences(self) -> None: ...

    async def stop(self) -> None: ...


def fleet_now(
    views: Views, runners: Mapping[str, JobRunner], now: int
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Each usable node this dispatcher runs: when its slots free (``projections.placement.node_times``),
    and which are free now. A lost job's slots stay taken until it is confirmed dead on the node
    (the node's ``node.fence_required``, NodeRunner.fenced_slots)."""
    times: dict[str, list[int]] = {}
    free: dict[str, list[int]] = {}
    for node in list(views.nodes.values()):
        if node.name not in runners or not node.usable:
            continue
        fenced = runners[node.name].fenced_slots()
        times[node.name] = node_times(node, [views.jobs[j] for j in views.node_jobs.get(node.name, ())], now, fenced)
        used = commands.busy_slots(views, node.name) | fenced
        free[node.name] = [slot for slot in range(node.slots) if slot not in used] if node.ready else []
    return times, free


def place(
    queue: list[JobState],
    free: dict[str, list[int]],
    sizes: dict[str, int],
    gpu_less: frozenset[str] = frozenset(),
    fleet_gpus: bool = True,
    *,
    times: Mapping[str, list[int]] | None = None,
    now: int = 0,
) -> tuple[JobState, str, list[int]] | None:
    """The next (job, node, slots): the first job in queue order that the placement the plan shows
    (``projections.placement``) starts now, on its node's first free slots. ``times``: when each usable
    node's slots free; without them a busy slot frees at an unknown time, taken as just after ``now``.
    ``gpu_less``: the nodes without GPUs, where only CPU-only jobs go (``ledger.domain.nodes.takes``)."""
    if times is None:
        times = {
            n: sorted([now] * len(free.get(n, [])) + [now + 1] * (size - len(free.get(n, []))))
            for n, size in sizes.items()
        }
    started = next_start(queue, Fleet(times, gpu_less, fleet_gpus), now)
    if started is None:
        return None
    job, node = started
    return job, node, free[node][: job.slots_needed]


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
        self._decided: dict[str, int] = {}  # waiting jobs decided, at their due mark: not decided again
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def reattach(self) -> None:
        """After a restart: every job the ledger shows on a node goes back to that node's runner, and
        every lost job still held there (not yet fenced) is killed when its node answers."""
        for each in self.runners.values():
            each.resume_fences()
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

    async def decide_waiting(self) -> None:
        """Decide, in one write, the waiting jobs a dependency of which ended since (``dependencies_due``):
        queued, cancelled, or left waiting until another ends. Costs those jobs, never the queue."""
        due = self.ledger.views.dependencies_due
        self._decided = {j: mark for j, mark in self._decided.items() if due.get(j) == mark}
        fresh = {j: mark for j, mark in list(due.items()) if j not in self._decided}
        if not fresh:
            return
        try:
            await self.ledger.write(store_dependencies.decide_waiting(list(fresh)))
        except DomainError as e:  # not expected (a decision refuses nothing): logged, decided again on change
            log.warning("dependencies.decide_refused", jobs=len(fresh), error=str(e))
        self._decided.update(fresh)

    async def release_tasks(self) -> None:
        """Let the arrays' next held tasks into the queue, where they are ranked like any job."""
        await self.decide_waiting()
        for array_id in to_release(self.ledger.views.arrays.values()):
            try:
                await self.ledger.write(store_arrays.release_tasks(array_id))
            except DomainError as e:  # the array changed meanwhile: the next pass sees it
                log.info("array.release_refused", array_id=array_id, error=str(e))

    async def dispatch_ready(self) -> int:
        dispatched = 0
        while True:
            if self._holding():
                return dispatched
            await self.release_tasks()
            views, now = self.ledger.views, now_us()
            times, free = fleet_now(views, self.runners, now)  # first: cheap, and no slot means no sort of the queue
            if not any(free.values()) or not views.queued:
                return dispatched
            queue, kinds = dispatch_order(views, now, self.weights), gpu_kinds(list(views.nodes.values()))
            placed = place(queue, free, {n: len(t) for n, t in times.items()}, *kinds, times=times, now=now)
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
