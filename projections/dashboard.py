"""The dashboard document (SPEC §6), computed from the views' indexes and tallies, never a scan of all jobs.

Its size is bounded: counts for everything, at most ``active_limit`` active jobs inline (the rest are
paged through ``/api/dashboard/active``), the 10 newest jobs, per-minute tallies for the 24 h figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ledger.clock import iso
from ledger.jobs import JobState
from ledger.users import UserStats
from projections.views import Views

STATUSES = ("pending", "running", "completed", "failed", "cancelled")


COUNTS = ("total", *STATUSES)


def user_counts(users: list[UserStats]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """All jobs' counts by status, and each user's (by user id); msgspec converts the tallies in C, which
    keeps thousands of users to a few milliseconds."""
    rows = msgspec.to_builtins(sorted(users, key=lambda stats: stats.user_id))
    per_user = {}
    for row in rows:
        user_id = row.pop("user_id")
        row.pop("recent_submits", None)
        row.pop("quota", None)  # today's quota use: GET /api/quota shows it
        per_user[user_id] = row
    return {key: sum(row[key] for row in rows) for key in COUNTS}, per_user


def health_metrics(views: Views, now: int) -> dict[str, Any]:
    usable = [n for n in list(views.nodes.values()) if n.status in ("up", "draining")]
    slots = sum(n.slots for n in usable) or 1
    busy = sum(len(views.jobs[j].held_slots) for n in usable for j in views.node_jobs.get(n.name, []))  # GPUs
    day = views.day_tally(now)
    return {
        "node_utilization_percent": round(100.0 * busy / slots, 1),
        "average_queue_time_seconds": round(day.wait_us / day.waited / 1e6, 3) if day.waited else 0.0,
        "total_active_jobs": len(views.active),
        "success_rate_percent": round(100.0 * day.completed / day.finished, 1) if day.finished else 0.0,
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
    job_view: Callable[[JobState], Any],
    node_view: Callable[[], list[Any]],
) -> dict[str, Any]:
    """``job_view``/``node_view`` render wire shapes (they know the plan); this assembles the rest."""
    # copied at once: the writer thread may add a user meanwhile
    totals, per_user = user_counts(list(views.users.values()))
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
        "job_statistics": totals,
        "user_statistics": per_user,
        "node_statistics": nodes,
        "queue_information": queue_information,
        "active_jobs": [job_view(j) for j in active],
        "active_jobs_total": active_total,  # the rest: /api/dashboard/active?offset=<len(active_jobs)>
        "recent_jobs": [job_view(j) for j in recent],
        "health_metrics": health_metrics(views, now),
    }
