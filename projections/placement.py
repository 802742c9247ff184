"""Where queued jobs go: the one placement that the dispatcher acts on and the queue plan shows.

Each usable node is the times at which its GPU slots free (now for a free slot, the expected end of
the job on a busy one). Jobs, in dispatch order, take the node where as many slots as they need free
first; on a tie the node less loaded at that instant, then the one earlier in the configuration. A
job booked for later holds its node's earliest slots from now on, so smaller jobs behind it cannot
delay it there (a large job is never starved by a stream of small ones). The dispatcher starts the
first job whose slot is free now; the plan keeps booking to tell every job's node and start.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from ledger.domain.arrays import ArrayProgress
from ledger.domain.jobs import JobState
from ledger.domain.nodes import NodeState, fleet_has_gpus, takes


def job_end(job: JobState, now: int) -> int:
    """When a job on a node should end: its start (or dispatch) plus its expected time, and never
    before ``now`` (an overrunning job may end at any moment)."""
    begun = job.started_at or job.dispatched_at or now
    return max(now, begun + job.expected_time_s * 1_000_000)


def slot_free_times(node_slots: int, running: Iterable[JobState], now: int, fenced: Iterable[int] = ()) -> list[int]:
    """When each of a node's GPU slots frees, soonest first. A busy slot is never free now, even under
    an overrunning job: the dispatcher may only start a job on a slot that is free. A fenced slot
    (a lost job not yet confirmed dead) frees at an unknown time, taken as just after now."""
    times = [now] * node_slots
    for slot in fenced:
        if slot < node_slots:
            times[slot] = now + 1
    for job in running:
        for slot in job.held_slots:
            if slot < node_slots:
                times[slot] = max(now + 1, job_end(job, now))
    return sorted(times)


def node_times(node: NodeState, running: Iterable[JobState], now: int, fenced: Iterable[int] = ()) -> list[int]:
    """A usable node's slot free times; a node restarting between jobs frees none before it is back."""
    times = slot_free_times(node.slots, running, now, fenced)
    return times if node.ready else [max(now + 1, at) for at in times]


def gpu_kinds(nodes: Iterable[NodeState]) -> tuple[frozenset[str], bool]:
    """The nodes without GPUs, and whether the fleet has any GPU: which kind of job goes where."""
    everyone = list(nodes)
    return frozenset(n.name for n in everyone if not n.has_gpus), fleet_has_gpus(everyone)


class Fleet:
    """The usable nodes' slot times, in configuration order, booked in place as jobs are placed."""

    def __init__(
        self, times: Mapping[str, list[int]], gpu_less: frozenset[str] = frozenset(), fleet_gpus: bool = True
    ) -> None:
        """``times``: each usable node's slot free times, sorted (``node_times``); ``gpu_less`` and
        ``fleet_gpus`` (``gpu_kinds``) decide which kind of job each node takes (``ledger.domain.nodes.takes``)."""
        usable = list(times.items())
        self.eligible = {  # by whether the job is CPU-only: the nodes that take it
            True: [(name, slots) for name, slots in usable if takes(0, name not in gpu_less, fleet_gpus)],
            False: [(name, slots) for name, slots in usable if takes(1, name not in gpu_less, fleet_gpus)],
        }
        self.times = dict(usable)

    def free_at(self, now: int) -> bool:
        """Whether any node has a slot free at ``now`` (no job can start now otherwise)."""
        return any(slots and slots[0] <= now for slots in self.times.values())

    def place(self, job: JobState) -> tuple[str, int] | None:
        """The node the job goes to and when its slots free there, booked; None when no node fits it."""
        taken = job.slots_needed
        best_at: int | None = None
        best_name, best_times = "", list[int]()
        for name, times in self.eligible[job.gpus == 0]:
            # The hot loop of a long queue's plan (every queued job, every node): the load only on a tie.
            if len(times) < taken:
                continue
            at = times[taken - 1]
            if best_at is None or at < best_at or (at == best_at and _load(times, at) < _load(best_times, at)):
                best_at, best_name, best_times = at, name, times
        if best_at is None:
            return None
        end = best_at + job.expected_time_s * 1_000_000
        del best_times[:taken]  # its slots free at the job's end now: still sorted after the insert
        at = bisect.bisect_right(best_times, end)
        best_times[at:at] = [end] * taken
        return best_name, best_at


def next_start(queue: Iterable[JobState], fleet: Fleet, now: int) -> tuple[JobState, str] | None:
    """The first job, in queue order, that the placement starts now, and its node. The jobs before it
    are booked for later on the way, as the plan books them: the nodes they hold take no other job."""
    for job in queue:
        if not fleet.free_at(now):
            return None
        placed = fleet.place(job)
        if placed is not None and placed[1] <= now:
            return job, placed[0]
    return None


def to_release(arrays: Iterable[ArrayProgress]) -> list[str]:
    """The arrays with held tasks and room to release some: what the placement step queues before it
    places. It costs the arrays in progress, never their tasks (each keeps its count and next task)."""
    return [p.array_id for p in arrays if p.head < len(p.held) and p.released < p.width]


def _load(times: list[int], at: int) -> float:
    """The share of a node's slots still busy at ``at``."""
    return (len(times) - bisect.bisect_right(times, at)) / len(times)
