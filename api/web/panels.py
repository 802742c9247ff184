"""The dashboard panels' documents, built from projections for one caller at one instant.

Another user's job shows as an anonymous segment or queue row (no job, user or competition id),
exactly as the anonymous node view does.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec

from api.auth import Identity
from api.present import factors_of, job_status, node_infos
from api.web.deps import Moment, can_see
from api.web.schemas import (
    JobsPanel,
    LaneNode,
    LanesPanel,
    NodePlanRow,
    NodeRow,
    NodesPanel,
    QueuePanel,
    QueuePanelRow,
    Segment,
    UsagePanel,
    UsageRow,
    UtilisationPanel,
)
from ledger.domain.clock import iso
from ledger.domain.jobs import JobState
from projections import timeline
from projections.job_search import JobFilter, pick
from projections.plan import pending_in_order, pending_reason

US = 1_000_000


class JobRef(TypedDict):
    job_id: str | None
    user_id: str | None
    competition_id: str | None


class Header(TypedDict):
    """What every panel starts with (api.web.schemas.Panel's fields)."""

    position: int
    at: str | None
    live: bool


def header(moment: Moment) -> Header:
    return {"position": moment.views.position, "at": iso(moment.now), "live": moment.live}


def _job_ref(job: JobState, who: Identity | None) -> JobRef:
    if not can_see(who, job):
        return {"job_id": None, "user_id": None, "competition_id": None}
    return {"job_id": job.job_id, "user_id": job.user_id, "competition_id": job.competition_id}


def nodes_panel(moment: Moment, who: Identity | None, slurm: dict[str, Any] | None = None) -> NodesPanel:
    """``slurm``: the cluster's partitions and nodes as sinfo shows them now (live views only)."""
    nodes = node_infos(moment.views, moment.plan, who, moment.now)
    drained = {n.name: n.drained for n in list(moment.views.nodes.values())}
    rows = [NodeRow(**msgspec.structs.asdict(n), drained=drained.get(n.name, False)) for n in nodes]
    return NodesPanel(**header(moment), nodes=rows, slurm=slurm if moment.live else None)


def queue_panel(moment: Moment, who: Identity | None, limit: int) -> QueuePanel:
    """The first ``limit`` pending jobs in the queue's order (the rest: ``GET /api/queue`` by page) and
    how many are pending."""
    views, plan = moment.views, moment.plan
    rows = []
    for job in pending_in_order(views, plan, limit):
        entry = plan.jobs.get(job.job_id)
        rows.append(
            QueuePanelRow(
                **_job_ref(job, who),
                queue_position=entry.position if entry else None,
                phase=job.phase,
                reason=pending_reason(job, plan, views),
                node=job.node or (entry.node if entry else None),
                estimated_start_at=iso(entry.start_at) if entry and entry.start_at is not None else None,
                expected_time=job.expected_time_s,
                waiting_s=round(job.waited_us(moment.now) / US, 1),
                **factors_of(entry if job.phase == "queued" else None),  # why it stands where it does
            )
        )
    nodes = [
        NodePlanRow(node=name, queue_length=p.queue_length, wait_s=p.wait_s, free_at=iso(p.free_at))
        for name, p in plan.nodes.items()
    ]
    return QueuePanel(**header(moment), queue=rows, pending_total=views.job_counts.pending, plan=nodes)


def jobs_panel(
    moment: Moment, candidates: list[JobState | None], flt: JobFilter, limit: int, total: int | None
) -> JobsPanel:
    picked = pick(candidates, flt, limit + 1)
    more = len(picked) > limit
    page = picked[:limit]
    return JobsPanel(
        **header(moment),
        jobs=[job_status(j, moment.views, moment.plan) for j in page],
        next_before=page[-1].position if more and page else None,
        total=total,
    )


def lanes_panel(moment: Moment, who: Identity | None, window_s: int, queued: int) -> LanesPanel:
    """``queued``: how many pending jobs from the head of the queue draw their planned waits."""
    since = moment.now - window_s * US
    jobs, cut = timeline.window_jobs(moment.views, since)
    head = pending_in_order(moment.views, moment.plan, queued)
    drawn = {job.job_id for job in jobs}  # a dispatched job is pending and on its node: drawn once
    segments = timeline.lanes([*jobs, *(j for j in head if j.job_id not in drawn)], moment.plan, since, moment.now)
    return LanesPanel(
        **header(moment),
        since=iso(since),
        nodes=[LaneNode(name=n.name, slots=n.slots) for n in list(moment.views.nodes.values())],
        truncated=cut,
        pending_drawn=len(head),
        pending_total=moment.views.job_counts.pending,
        segments=[
            Segment(
                **_job_ref(s.job, who),
                node=s.node,
                slot=slot,
                kind=s.kind,
                planned=s.planned,
                status=s.job.status,
                start_ms=s.start // 1000,  # numbers, not ISO text: thousands of these per answer
                end_ms=s.end // 1000,
            )
            for s in segments
            for slot in s.job.held_slots or [0]  # a multi-GPU job draws on each of its slots' lanes
        ],
    )


def utilisation_panel(moment: Moment, window_s: int, buckets: int) -> UtilisationPanel:
    since = moment.now - window_s * US
    jobs, cut = timeline.window_jobs(moment.views, since)
    segments = timeline.lanes(jobs, moment.plan, since, moment.now)
    width = (moment.now - since) / buckets
    return UtilisationPanel(
        **header(moment),
        since=iso(since),
        truncated=cut,
        times=[round((since + (i + 0.5) * width) / US, 3) for i in range(buckets)],
        percent=timeline.utilisation(moment.views, segments, since, moment.now, buckets),
    )


def usage_panel(moment: Moment, who: Identity, window_s: int) -> UsagePanel:
    since = moment.now - window_s * US
    rows = [
        UsageRow(
            user_id=u.user_id,
            jobs=u.jobs,
            running=u.running,
            completed=u.completed,
            failed=u.failed,
            cancelled=u.cancelled,
            gpu_hours=round(u.gpu_us / 3600 / US, 3),
            success_rate_percent=u.success_rate,
        )
        for u in timeline.usage(moment.views, since, moment.now)
        if who.is_admin or u.user_id == who.user_id
    ]
    return UsagePanel(**header(moment), since=iso(since), users=rows)
