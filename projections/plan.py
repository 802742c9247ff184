"""The scheduler's plan: which node each queued job will probably get, and when.

A pure function of the views and the clock. Each usable slot frees at (start + expected time) of
the job on it; queued jobs, in dispatch order, take the slot that frees first. This is what gives
``queue_position``, ``estimated_start_at`` and the per-node queue figures their meaning.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ledger.jobs import JobState
from projections.views import Views


@dataclass(frozen=True)
class JobPlan:
    position: int  # 0 = next to be dispatched
    node: str | None
    start_at: int | None  # microseconds; None when no node can take it


@dataclass
class NodePlan:
    queue_length: int = 0
    free_at: int = 0  # when the node's last planned job should end
    wait_s: float = 0.0


@dataclass
class Plan:
    jobs: dict[str, JobPlan] = field(default_factory=dict)
    nodes: dict[str, NodePlan] = field(default_factory=dict)
    any_node_usable: bool = False


def _job_end(job: JobState, now: int) -> int:
    begun = job.started_at or job.dispatched_at or now
    return max(now, begun + job.expected_time_s * 1_000_000)


def make_plan(views: Views, now: int) -> Plan:
    plan = Plan()
    slots: list[tuple[int, int, str]] = []  # (free_at, node order, node name): a min-heap
    for order, node in enumerate(list(views.nodes.values())):
        running = [views.jobs[j] for j in views.node_jobs.get(node.name, [])]
        node_plan = NodePlan(free_at=max([now, *(_job_end(j, now) for j in running)]))
        plan.nodes[node.name] = node_plan
        if node.status in ("up", "restarting"):
            ends = sorted(_job_end(j, now) for j in running)
            free = [now] * max(0, node.slots - len(running))
            for slot_free_at in (free + ends)[: node.slots]:
                heapq.heappush(slots, (slot_free_at, order, node.name))
    plan.any_node_usable = bool(slots)
    for index, job in enumerate(views.queue()):
        if not slots:
            plan.jobs[job.job_id] = JobPlan(position=index, node=None, start_at=None)
            continue
        free_at, order, name = heapq.heappop(slots)  # the slot that frees first
        plan.jobs[job.job_id] = JobPlan(position=index, node=name, start_at=free_at)
        job_end = free_at + job.expected_time_s * 1_000_000
        node_plan = plan.nodes[name]
        node_plan.queue_length += 1
        node_plan.free_at = max(node_plan.free_at, job_end)
        heapq.heappush(slots, (job_end, order, name))
    for node_plan in plan.nodes.values():
        node_plan.wait_s = round((node_plan.free_at - now) / 1_000_000, 3)
    return plan


class PlanCache:
    """The plan, recomputed when the ledger moved or a second passed, not on every request
    (a long queue makes the plan a sort of every queued job)."""

    def __init__(self, max_age_us: int = 1_000_000) -> None:
        self.max_age_us = max_age_us
        self._key: tuple[int, int] | None = None
        self._plan: Plan | None = None

    def get(self, views: Views, now: int) -> Plan:
        key = (views.position, now // self.max_age_us)
        if self._plan is None or self._key != key:
            self._plan, self._key = make_plan(views, now), key
        return self._plan


def pending_reason(job: JobState, plan: Plan, views: Views) -> str | None:
    """Why a pending job is not running yet, in the words a researcher understands."""
    if job.status != "pending":
        return None
    match job.phase:
        case "scanning":
            return "scanning"
        case "submitted":
            return "waiting to be queued"
        case "dispatched" | "cancelling":
            return f"starting on {job.node}"
    if not plan.any_node_usable:
        drained = any(n.drained for n in list(views.nodes.values()))
        return "node draining" if drained else "no node available (all nodes down)"
    entry = plan.jobs.get(job.job_id)
    if entry is not None and entry.position == 0 and entry.start_at is not None and entry.start_at <= views.recorded_at:
        return "dispatching"
    return "waiting for a free node"
