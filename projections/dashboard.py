"""The dashboard document (SPEC §6), computed from the views and indexed reads, never a scan of all jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.clock import iso
from ledger.jobs import JobState
from projections.views import Views

DAY_US = 86_400 * 1_000_000
STATUSES = ("pending", "running", "completed", "failed", "cancelled")


def _counts(stats: Any) -> dict[str, int]:
    return {"total": stats.total, **{s: getattr(stats, s) for s in STATUSES}}


def health_metrics(views: Views, finished_24h: list[JobState]) -> dict[str, Any]:
    usable = [n for n in list(views.nodes.values()) if n.status in ("up", "draining")]
    slots = sum(n.slots for n in usable) or 1
    busy = sum(len(views.jobs[j].held_slots) for n in usable for j in views.node_jobs.get(n.name, []))  # GPUs
    waits = [(j.started_at - j.created_at) / 1e6 for j in finished_24h if j.started_at]
    completed = sum(1 for j in finished_24h if j.status == "completed")
    gpu_us = sum(j.gpus * (j.completed_at - j.started_at) for j in finished_24h if j.started_at and j.completed_at)
    return {
        "node_utilization_percent": round(100.0 * busy / slots, 1),
        "average_queue_time_seconds": round(sum(waits) / len(waits), 3) if waits else 0.0,
        "total_active_jobs": len(views.active),
        "success_rate_percent": round(100.0 * completed / len(finished_24h), 1) if finished_24h else 0.0,
        "jobs_last_24h": len(finished_24h),
        "gpu_hours_last_24h": round(gpu_us / 3.6e9, 3),
    }


def dashboard_document(
    views: Views,
    *,
    now: int,
    user_id: str,
    is_admin: bool,
    recent: list[JobState],
    finished_24h: list[JobState],
    job_view: Callable[[JobState], Any],
    node_view: Callable[[], list[Any]],
) -> dict[str, Any]:
    """``job_view``/``node_view`` render wire shapes (they know the plan); this assembles the rest."""
    totals = dict.fromkeys(("total", *STATUSES), 0)
    users = list(views.users.values())  # copied at once: the writer thread may add a user meanwhile
    for stats in users:
        for key, value in _counts(stats).items():
            totals[key] += value
    nodes = node_view()
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
        "user_statistics": {stats.user_id: _counts(stats) for stats in sorted(users, key=lambda s: s.user_id)},
        "node_statistics": nodes,
        "queue_information": queue_information,
        "active_jobs": [job_view(j) for j in views.active_jobs()],
        "recent_jobs": [job_view(j) for j in recent],
        "health_metrics": health_metrics(views, finished_24h),
    }


def recent_and_finished(views: Views, now: int) -> tuple[list[JobState], list[JobState]]:
    """For a replayed (as-of) view: the 10 newest jobs and those finished in the 24 h before ``now``."""
    jobs = sorted(views.jobs.values(), key=lambda j: j.position, reverse=True)
    finished = [j for j in jobs if j.completed_at is not None and j.completed_at >= now - DAY_US]
    return jobs[:10], finished
