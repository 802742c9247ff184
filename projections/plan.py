"""The scheduler's plan: which node each queued job will probably get, and when.

A pure function of the views and the clock. Each usable GPU slot frees at (start + expected time)
of the job on it; queued jobs, in dispatch order, take the node where as many slots as they need
GPUs free first. This is what gives
``queue_position``, ``estimated_start_at`` and the per-node queue figures their meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


@dataclass(frozen=True)
class ExternalStatus:
    """What an outside scheduler (Slurm) says of a job handed to it and not started yet."""

    reason: str
    start_at: int | None  # microseconds; the scheduler's own estimate


@dataclass
class Plan:
    jobs: dict[str, JobPlan] = field(default_factory=dict)
    nodes: dict[str, NodePlan] = field(default_factory=dict)
    any_node_usable: bool = False
    external: Mapping[str, ExternalStatus] = field(default_factory=dict)


def _job_end(job: JobState, now: int) -> int:
    begun = job.started_at or job.dispatched_at or now
    return max(now, begun + job.expected_time_s * 1_000_000)


def _slot_free_times(node_slots: int, running: list[JobState], now: int) -> list[int]:
    """When each of a node's GPU slots frees, soonest first."""
    times = [now] * node_slots
    for job in running:
        for slot in job.held_slots:
            if slot < node_slots:
                times[slot] = _job_end(job, now)
    return sorted(times)


def make_plan(views: Views, now: int) -> Plan:
    """Queued jobs in dispatch order take the node where their ``gpus`` slots free first."""
    plan = Plan()
    free_times: dict[str, list[int]] = {}  # usable node -> its slots' free times, sorted
    for node in list(views.nodes.values()):
        running = [views.jobs[j] for j in views.node_jobs.get(node.name, [])]
        plan.nodes[node.name] = NodePlan(free_at=max([now, *(_job_end(j, now) for j in running)]))
        if node.status in ("up", "restarting"):
            free_times[node.name] = _slot_free_times(node.slots, running, now)
    plan.any_node_usable = bool(free_times)
    for index, job in enumerate(views.queue()):
        best: tuple[int, str] | None = None
        for name, times in free_times.items():
            # Strictly sooner wins: on a tie the node earlier in the configuration keeps it.
            if len(times) >= job.gpus and (best is None or times[job.gpus - 1] < best[0]):
                best = (times[job.gpus - 1], name)
        if best is None:
            plan.jobs[job.job_id] = JobPlan(position=index, node=None, start_at=None)
            continue
        start_at, name = best
        plan.jobs[job.job_id] = JobPlan(position=index, node=name, start_at=start_at)
        job_end = start_at + job.expected_time_s * 1_000_000
        free_times[name] = sorted(free_times[name][job.gpus :] + [job_end] * job.gpus)
        node_plan = plan.nodes[name]
        node_plan.queue_length += 1
        node_plan.free_at = max(node_plan.free_at, job_end)
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
        # The outside scheduler's word on jobs handed to it (set by the composition root with Slurm).
        self.external: Callable[[], Mapping[str, ExternalStatus]] = dict

    def get(self, views: Views, now: int) -> Plan:
        key = (views.position, now // self.max_age_us)
        if self._plan is None or self._key != key:
            self._plan, self._key = make_plan(views, now), key
        self._plan.external = self.external()
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
            external = plan.external.get(job.job_id)
            return external.reason if external is not None else f"starting on {job.node}"
    if not plan.any_node_usable:
        drained = any(n.drained for n in list(views.nodes.values()))
        return "node draining" if drained else "no node available (all nodes down)"
    entry = plan.jobs.get(job.job_id)
    if entry is not None and entry.position == 0 and entry.start_at is not None and entry.start_at <= views.recorded_at:
        return "dispatching"
    return "waiting for a free node"
