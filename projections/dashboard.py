"""The dashboard document (SPEC §6), computed from the views' indexes and tallies, never a scan of all jobs.

Its size is bounded: counts for everything, at most ``active_limit`` active jobs and ``users_limit`` users
inline (the rest are paged through ``/api/dashboard/active`` and ``/api/dashboard/users``), the 10 newest
jobs, per-minute tallies for the 24 h figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ledger.clock import iso
from ledger.jobs import JobState
from ledger.users import COUNTED, UserStats, success_rate
from projections.views import Views

STATUSES = ("pending", "running", "completed", "failed", "cancelled")


def user_rows(users: list[UserStats]) -> list[dict[str, Any]]:
    """Each user's row of the dashboard (``user_id`` and the counts by status): the one place a user's
    figures are rendered, inline and by page. The fields are plain numbers: a shallow copy in C, which
    leaves the two that are no figures unconverted (the rate limiter's submit times can be thousands)."""
    rows = [msgspec.structs.asdict(user) for user in users]
    for row in rows:
        del row["recent_submits"]  # the rate limiter's working set, not a figure
        del row["quota"]  # today's quota use: GET /api/quota shows it
    return rows


def user_statistics(views: Views, limit: int) -> dict[str, dict[str, Any]]:
    """The ``limit`` most relevant users (active first, then the latest submitters) by user id."""
    _, users = views.ranked_users(0, limit)
    return {row.pop("user_id"): row for row in user_rows(users)}


def job_statistics(views: Views) -> dict[str, int]:
    """All jobs' counts by status, kept as the fold runs (never a sum over users per request)."""
    row = msgspec.to_builtins(views.job_counts)
    return {key: row[key] for key in COUNTED}


def health_metrics(views: Views, now: int) -> dict[str, Any]:
    usable = [n for n in list(views.nodes.values()) if n.status in ("up", "draining")]
    slots = sum(n.slots for n in usable) or 1
    busy = sum(len(views.jobs[j].held_slots) for n in usable for j in views.node_jobs.get(n.name, []))  # GPUs
    day = views.day_tally(now)
    return {
        "node_utilization_percent": round(100.0 * busy / slots, 1),
        "average_queue_time_seconds": round(day.wait_us / day.waited / 1e6, 3) if day.waited else 0.0,
        "total_active_jobs": len(views.active),
        "success_rate_percent": success_rate(day.completed, day.failed),
        "jobs_last_24h": day.finished,
        "gpu_hours_last_24h": round(day.gpu_us / 3.6e9, 3),
    }


def dashboard_document(
    views: Views,
    *,
    now: int,
    user_id: str,
    is_admin: bool,
    active_limit: int,
    users_limit: int,
    job_view: Callable[[JobState], Any],
    node_view: Callable[[], list[Any]],
) -> dict[str, Any]:
    """``job_view``/``node_view`` render wire shapes (they know the plan); this assembles the rest."""
    nodes = node_view()
    active_total, active = views.active_page(0, active_limit)
    recent = views.newest_jobs(user_id=None, status=None, limit=10)
    queue_information = [
        {
            "node_id": n.node_id,
            "node": n.name,
            "queue_size": n.queue_length,
            "queue_time_seconds": n.total_wait_time,
            "is_busy": n.running > 0,
            "status": n.status,
            "current_job": None
            if n.current_job is None
            else {
                "job_id": n.current_job.job_id,
                "user_id": n.current_job.user_id,
                "competition_id": n.current_job.competition_id,
                "started_at": n.current_job.started_at,
            },
        }
        for n in nodes
    ]
    return {
        "timestamp": iso(now),
        "position": views.position,
        "user_id": user_id,
        "is_admin": is_admin,
        "job_statistics": job_statistics(views),
        "user_statistics": user_statistics(views, users_limit),
        "user_statistics_total": len(views.users),  # the rest: /api/dashboard/users?offset=<len(user_statistics)>
        "node_statistics": nodes,
        "queue_information": queue_information,
        "active_jobs": [job_view(j) for j in active],
        "active_jobs_total": active_total,  # the rest: /api/dashboard/active?offset=<len(active_jobs)>
        "recent_jobs": [job_view(j) for j in recent],
        "health_metrics": health_metrics(views, now),
    }
