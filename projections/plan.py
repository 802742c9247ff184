"""The scheduler's plan: which node each queued job will probably get, and when, and why in that order.

A pure function of the views, the clock and the score's weights. Each usable GPU slot frees at
(start + expected time) of the job on it; queued jobs, in dispatch order (the fair-share score,
``projections.fairshare.rank``), are placed as the dispatcher places them (``projections.placement``).
This is what gives ``queue_position``, ``estimated_start_at``, the factors and the per-node queue
figures their meaning. A job whose user is at their GPU cap is ranked but not placed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from ledger.domain.clock import now_us
from ledger.domain.dependencies import is_waiting, waiting_words
from ledger.domain.jobs import JobState
from ledger.domain.shares import Weights
from ledger.store.dependencies import ended_of
from ledger.store.writer import Ledger
from projections.fairshare import Ranked, factors_by_user, gpus_in_use
from projections.placement import Fleet, gpu_kinds, job_end, node_times
from projections.views import Views

log = structlog.get_logger()
PLAN_REST = 9  # the background plan waits at least this many times its own duration before the next


@dataclass(slots=True)  # not frozen: a frozen dataclass pays object.__setattr__ per field, per queued job
class JobPlan:
    position: int  # 0 = next to be dispatched
    node: str | None
    start_at: int | None  # microseconds; None when no node can take it
    ranked: Ranked | None = None  # the score and its factors
    held: str | None = None  # why the job is not placed although ranked (its user's GPU cap)

    @property
    def score(self) -> float:
        return self.ranked.score if self.ranked is not None else 0.0

    @property
    def fairshare(self) -> float:
        return self.ranked.fairshare if self.ranked is not None else 1.0

    @property
    def age(self) -> float:
        return self.ranked.age if self.ranked is not None else 0.0

    @property
    def priority(self) -> int:
        return self.ranked.priority if self.ranked is not None else 0


@dataclass
class NodePlan:
    queue_length: int = 0
    free_at: int = 0  # when the node's last planned job should end
    wait_s: float = 0.0


@dataclass(frozen=True)
class ExternalStatus:
    """What an outside scheduler (an executor's own, e.g. Slurm) says of a job handed to it and not started yet."""

    reason: str
    start_at: int | None  # microseconds; the scheduler's own estimate


@dataclass
class Plan:
    jobs: dict[str, JobPlan] = field(default_factory=dict)
    nodes: dict[str, NodePlan] = field(default_factory=dict)
    any_node_usable: bool = False
    external: Mapping[str, ExternalStatus] = field(default_factory=dict)
    factors: dict[str, float] = field(default_factory=dict)  # fair-share factor of each competing user
    made_at: int = 0  # the instant it planned for (``make_plan``'s ``now``)
    held: str | None = None  # why no job is dispatched at all now (the dispatcher's hold), as of the read


def capped(views: Views, ranked: list[Ranked]) -> dict[str, str]:
    """Queued jobs whose user's running jobs already hold so many GPUs that this one would pass the
    user's ``max_gpus``: job id -> the reason (O(queued + on nodes))."""
    caps = {user: a.max_gpus for user, a in views.shares.items() if a.max_gpus}
    if not caps:
        return {}
    held = gpus_in_use(views.on_nodes())
    return {
        r.job.job_id: f"user GPU cap reached ({held.get(r.job.user_id, 0)} of {caps[r.job.user_id]} GPUs in use)"
        for r in ranked
        if r.job.user_id in caps and held.get(r.job.user_id, 0) + r.job.gpus > caps[r.job.user_id]
    }


def make_plan(views: Views, now: int, weights: Weights | None = None) -> Plan:
    """Queued jobs in dispatch order, placed as the dispatcher will place them (``projections.placement``)."""
    plan = Plan(made_at=now)
    free_times: dict[str, list[int]] = {}  # usable node -> its slots' free times, sorted
    for node in views.nodes.values():  # a published snapshot: nothing changes it while the plan runs
        running = [j for j in map(views.jobs.get, views.node_jobs.get(node.name, ())) if j is not None]
        plan.nodes[node.name] = NodePlan(free_at=max([now, *(job_end(j, now) for j in running)]))
        if node.usable:
            free_times[node.name] = node_times(node, running, now)
    plan.any_node_usable = bool(free_times)
    ranked = views.ranked(now, weights or Weights())
    # every competing user's factor, once per plan (off the loop), not once per dashboard request
    plan.factors = factors_by_user([r.job for r in ranked], views.on_nodes(), views.shares, now, views.half_life_s)
    held = capped(views, ranked)
    fleet, jobs = Fleet(free_times, *gpu_kinds(views.nodes.values())), plan.jobs
    for index, entry in enumerate(ranked):
        job = entry.job
        placed = None if job.job_id in held else fleet.place(job)
        if placed is None:
            jobs[job.job_id] = JobPlan(index, None, None, entry, held.get(job.job_id))
            continue
        name, start_at = placed
        jobs[job.job_id] = JobPlan(index, name, start_at, entry)
        node_plan = plan.nodes[name]
        node_plan.queue_length += 1
        node_plan.free_at = max(node_plan.free_at, start_at + job.expected_time_s * 1_000_000)
    for node_plan in plan.nodes.values():
        node_plan.wait_s = round((node_plan.free_at - now) / 1_000_000, 3)
    return plan


class PlanCache:
    """The current plan, recomputed in a worker thread when the ledger moved (at most every
    ``min_interval_s``, and every ``max_age_s`` as the clock moves: a 25 k queue is ~80 ms of CPU) and swapped in whole.

    A long queue makes the plan a sort of every queued job (tens of milliseconds at 25 k): readers take
    the last plan made and never wait for one, except for a queued job the plan does not know yet
    (``including``), which waits for the next one rather than be shown without a queue position.
    """

    def __init__(self, min_interval_s: float = 0.2, max_age_s: float = 5.0, weights: Weights | None = None) -> None:
        self.weights = weights or Weights()  # the score changes with the clock: each plan scores anew
        self.min_interval_s = min_interval_s
        self.max_age_s = max_age_s
        self.position = -1  # every event up to here is in the plan
        self._plan: Plan | None = None
        # The outside scheduler's word on jobs handed to it (the executor's ``pending_board``).
        self.external: Callable[[], Mapping[str, ExternalStatus]] = dict
        self.hold: Callable[[], str | None] = lambda: None  # the dispatcher's hold (the composition root's)
        self._made = asyncio.Event()

    def get(self, views: Views, now: int) -> Plan:
        if self._plan is None:  # before the first background plan (or with none running: tools, tests)
            self.position, self._plan = views.position, make_plan(views, now, self.weights)
        self._plan.external = self.external()
        self._plan.held = self.hold()
        return self._plan

    async def including(self, job: JobState, views: Views, head: int) -> Plan:
        """The plan, one made at ``head`` or later when this queued job is not in the current one."""
        plan = self.get(views, now_us())
        deadline = asyncio.get_running_loop().time() + 2 * self.max_age_s
        while job.job_id not in plan.jobs and job.phase == "queued" and self.position < head:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            made = self._made
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await made.wait()
            plan = self.get(views, now_us())
        return plan

    async def run(self, ledger: Ledger[Views]) -> None:
        """The background task: plan, swap, wait for the ledger to move (or the plan to age), again."""
        while True:
            position = ledger.head  # read before planning: the plan holds at least this much
            began = time.perf_counter()
            try:
                plan = await asyncio.to_thread(make_plan, ledger.views, now_us(), self.weights)
            except Exception as e:  # one failed plan must not end planning: status reads wait for plans
                log.error("plan.failed", error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(self.min_interval_s)
                continue
            took = time.perf_counter() - began
            self.position, self._plan = position, plan
            made, self._made = self._made, asyncio.Event()
            made.set()
            # The plan holds the GIL while it runs: rest PLAN_REST times as long, so a long queue's plan
            # takes at most a tenth of the CPU the event loop shares with it (at a fifth, status reads at
            # 25 k pending measured about 0.1 x /livez lower)
            await asyncio.sleep(max(self.min_interval_s, PLAN_REST * took))
            await ledger.wait_beyond(position, timeout=max(0.0, self.max_age_s - self.min_interval_s))


def pending_in_order(views: Views, plan: Plan, limit: int) -> list[JobState]:
    """The first ``limit`` pending jobs in the queue's order: those the plan does not hold (scanning,
    to be queued, queued since it was made), by submit; then the plan's, in its order. Costs the page,
    the few jobs outside the queue and the changes since the plan, never a walk of the queue."""
    jobs = views.jobs
    since = [j for j in views.queued_since(plan.jobs, plan.made_at) if j not in plan.jobs]
    outside = [j for j in views.unqueued if j not in plan.jobs] + since
    page = sorted((job for job in map(jobs.get, outside) if job is not None), key=lambda job: job.position)[:limit]
    if len(page) < limit:
        for job_id in plan.jobs:  # in the plan's order (it is built in that order and never changed)
            job = jobs.get(job_id)
            if job is not None and job.status == "pending":  # not started or ended since the plan
                page.append(job)
                if len(page) == limit:
                    break
    return page


def pending_reason(job: JobState, plan: Plan, views: Views) -> str | None:
    """Why a pending job is not running yet, in the words a researcher understands."""
    if job.status != "pending":
        return None
    if is_waiting(job):
        return waiting_words(job, ended_of(views, job.after)) if job.after is not None else None
    match job.phase:
        case "scanning":
            return "scanning"
        case "submitted" if job.array_id is not None:
            return f"held: array {job.array_id} runs at most {job.array_width} task(s) at once"
        case "submitted":
            return "waiting to be queued"
        case "dispatched" | "cancelling":
            external = plan.external.get(job.job_id)
            return external.reason if external is not None else f"starting on {job.node}"
    if plan.held is not None:
        return plan.held
    if not plan.any_node_usable:
        drained = any(n.drained for n in views.nodes.values())
        return "node draining" if drained else "no node available (all nodes down)"
    entry = plan.jobs.get(job.job_id)
    if entry is not None and entry.held is not None:
        return entry.held
    if entry is not None and entry.position == 0 and entry.start_at is not None and entry.start_at <= views.recorded_at:
        return "dispatching"
    return "waiting for a free node"
