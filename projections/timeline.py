"""The cluster over a window of time: per-node lanes (wait and run segments), utilisation, per-user usage.

Pure functions of the views and an instant. They read the jobs finished inside the window (the
``finished`` index is in completion order, so a window is a bisect, not a scan of all jobs) and
the jobs on nodes (bounded by the slots); the lanes also draw the head of the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.domain.jobs import JobState
from ledger.domain.users import success_rate
from projections.plan import Plan
from projections.views import Views

MAX_WINDOW_JOBS = 500  # newest jobs a lanes or utilisation answer draws: more would not be readable anyway
US = 1_000_000


@dataclass(frozen=True)
class Segment:
    node: str
    job: JobState
    kind: str  # "wait" (submitted, not yet started) or "run"
    start: int
    end: int
    planned: bool = False  # a queued job's wait on the node the plan gives it


@dataclass
class Usage:
    user_id: str
    jobs: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    gpu_us: int = 0

    @property
    def success_rate(self) -> float | None:
        return success_rate(self.completed, self.failed)


def window_jobs(views: Views, since: int, *, limit: int | None = MAX_WINDOW_JOBS) -> tuple[list[JobState], bool]:
    """Jobs finished at or after ``since`` (newest ``limit`` of them) plus every job on a node (bounded
    by the slots); and whether the window held more finished jobs than ``limit``. Jobs still waiting
    for a node are not in it (they ran nowhere yet, and a long queue would be most of the answer):
    the lanes add the head of the queue (``projections.plan.pending_in_order``)."""
    finished = views.finished_since(since)
    cut = limit is not None and len(finished) > limit
    if cut and limit is not None:
        finished = finished[-limit:]
    return [*finished, *views.on_nodes()], cut


def _segments_of(job: JobState, plan: Plan, now: int) -> list[Segment]:
    started, ended = job.started_at, job.completed_at
    node = job.node
    planned = False
    if node is None:
        entry = plan.jobs.get(job.job_id)
        if entry is None or entry.node is None or job.is_terminal:
            return []
        node, planned = entry.node, True
    wait_end = started if started is not None else (ended if ended is not None else now)
    out = [Segment(node=node, job=job, kind="wait", start=job.created_at, end=wait_end, planned=planned)]
    if started is not None:
        out.append(Segment(node=node, job=job, kind="run", start=started, end=ended if ended is not None else now))
    return out


def lanes(jobs: list[JobState], plan: Plan, since: int, now: int) -> list[Segment]:
    """Every wait and run segment that overlaps [since, now], clipped to it."""
    segments = []
    for job in jobs:
        for seg in _segments_of(job, plan, now):
            if seg.end >= since and seg.start <= now:
                start, end = max(seg.start, since), min(seg.end, now)
                segments.append(Segment(seg.node, seg.job, seg.kind, start, end, seg.planned))
    return segments


def utilisation(views: Views, segments: list[Segment], since: int, now: int, buckets: int) -> list[float]:
    """Busy share of all slots (percent) in each of ``buckets`` equal steps of the window."""
    slots = sum(n.slots for n in list(views.nodes.values())) or 1
    width = max(1, (now - since) // buckets)
    busy = [0] * buckets
    for seg in segments:
        if seg.kind != "run":
            continue
        first, last = (seg.start - since) // width, min(buckets - 1, (seg.end - since) // width)
        for index in range(max(0, first), last + 1):
            low, high = since + index * width, since + (index + 1) * width
            busy[index] += max(0, min(seg.end, high) - max(seg.start, low)) * seg.job.gpus  # GPUs, not jobs
    return [round(100.0 * b / (width * slots), 1) for b in busy]


def usage(views: Views, since: int, now: int) -> list[Usage]:
    """Per user over [since, now]: jobs ended or on a node, GPU time (run time x the job's GPUs), outcomes."""
    table: dict[str, Usage] = {}
    for job in window_jobs(views, since, limit=None)[0]:
        row = table.get(job.user_id)
        if row is None:
            row = table[job.user_id] = Usage(user_id=job.user_id)
        row.jobs += 1
        if job.status == "running":
            row.running += 1
        elif job.status in ("completed", "failed", "cancelled"):
            setattr(row, job.status, getattr(row, job.status) + 1)
        if job.started_at is not None:
            end = job.completed_at if job.completed_at is not None else now
            row.gpu_us += max(0, min(end, now) - max(job.started_at, since)) * job.charged_gpus
    return sorted(table.values(), key=lambda u: (-u.gpu_us, u.user_id))
