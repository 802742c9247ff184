"""The admin dashboard document (SPEC §6): the projections' figures, with jobs and nodes in their wire shapes.

Assembled here, not in projections/dashboard.py: the job and node shapes know the plan and the caller
(api/present.py), and a projection never calls up into the API to render them.
"""

from __future__ import annotations

from typing import Any

from api.accounts import accounts_document
from api.auth import Identity
from api.diskuse import DiskUse
from api.present import job_status, node_infos
from api.schemas import Dashboard, NodeInfo, NodeJob, QueueInformation
from ledger.domain.clock import iso
from projections.dashboard import health_metrics, job_statistics, user_statistics
from projections.gpu_usage import gpu_usage
from projections.plan import Plan
from projections.views import Views

DAY_US = 86_400_000_000


def queue_information(nodes: list[NodeInfo]) -> list[QueueInformation]:
    """Each node's queue in the original system's words."""
    return [
        QueueInformation(
            node_id=n.node_id,
            node=n.name,
            queue_size=n.queue_length,
            queue_time_seconds=n.total_wait_time,
            is_busy=n.running > 0,
            status=n.status,
            current_job=None
            if n.current_job is None
            else NodeJob(
                job_id=n.current_job.job_id,
                user_id=n.current_job.user_id,
                competition_id=n.current_job.competition_id,
                started_at=n.current_job.started_at,
            ),
        )
        for n in nodes
    ]


def dashboard_document(
    views: Views,
    plan: Plan,
    who: Identity,
    *,
    now: int,
    limits: tuple[int, int],
    slurm: dict[str, Any] | None,
    disk: DiskUse | None,
) -> Dashboard:
    """``limits``: how many active jobs and users are inline (the rest by page)."""
    active_limit, users_limit = limits
    nodes = node_infos(views, plan, who, now)
    active_total, active = views.active_page(0, active_limit)
    recent = views.newest_jobs(user_id=None, status=None, limit=10)
    users = user_statistics(views, users_limit)
    return Dashboard(
        timestamp=iso(now),
        position=views.position,
        user_id=who.user_id,
        is_admin=who.is_admin,
        job_statistics=job_statistics(views),
        user_statistics=users,
        user_statistics_total=len(views.users),
        node_statistics=nodes,
        queue_information=queue_information(nodes),
        active_jobs=[job_status(j, views, plan) for j in active],
        active_jobs_total=active_total,
        recent_jobs=[job_status(j, views, plan) for j in recent],
        health_metrics=health_metrics(views, now),
        slurm=slurm,
        disk=disk,
        # per user: share, caps, usage, factor; for the users inline (all of them: GET /api/admin/users)
        fairshare=accounts_document(views, now, users=users, factors=plan.factors),
        gpu_usage=gpu_usage(
            views.finished_since(now - DAY_US), since=now - DAY_US, user_id=None, users=users_limit, limit=10
        ),
    )
