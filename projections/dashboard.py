"""The dashboard document (SPEC §6), computed from the views' indexes and tallies, never a scan of all jobs.

Its size is bounded: counts for everything, at most ``active_limit`` active jobs and ``users_limit`` users
inline (the rest are paged through ``/api/dashboard/active`` and ``/api/dashboard/users``), the 10 newest
jobs, per-minute tallies for the 24 h figures.
"""

from __future__ import annotations

import msgspec

from ledger.domain.users import UserStats, success_rate
from projections.views import Views

STATUSES = ("pending", "running", "completed", "failed", "cancelled")


class StatusCounts(msgspec.Struct, kw_only=True):
    """Jobs by status: all jobs' (``job_statistics``) or one user's."""

    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class UserRow(msgspec.Struct, kw_only=True):
    """A user's counts by status, with the user (a row of ``/api/dashboard/users``)."""

    user_id: str
    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class HealthMetrics(msgspec.Struct, kw_only=True):
    node_utilization_percent: float
    average_queue_time_seconds: float
    total_active_jobs: int
    success_rate_percent: float | None  # None: no job finished in the last 24 h
    jobs_last_24h: int
    gpu_hours_last_24h: float


def user_rows(users: list[UserStats]) -> list[UserRow]:
    """Each user's row of the dashboard (``user_id`` and the counts by status): the one place a user's
    figures are rendered, inline and by page. Read off the stats' attributes in C; the rate limiter's
    submit times and today's quota use (``GET /api/quota``) are no figures and stay behind."""
    return [msgspec.convert(user, UserRow, from_attributes=True) for user in users]


def user_statistics(views: Views, limit: int) -> dict[str, StatusCounts]:
    """The ``limit`` most relevant users (active first, then the latest submitters) by user id."""
    _, users = views.ranked_users(0, limit)
    return {user.user_id: msgspec.convert(user, StatusCounts, from_attributes=True) for user in users}


def job_statistics(views: Views) -> StatusCounts:
    """All jobs' counts by status, kept as the fold runs (never a sum over users per request)."""
    return msgspec.convert(views.job_counts, StatusCounts, from_attributes=True)


def health_metrics(views: Views, now: int) -> HealthMetrics:
    usable = [n for n in list(views.nodes.values()) if n.status in ("up", "draining")]
    slots = sum(n.slots for n in usable) or 1
    busy = sum(len(views.jobs[j].held_slots) for n in usable for j in views.node_jobs.get(n.name, []))  # GPUs
    day = views.day_tally(now)
    return HealthMetrics(
        node_utilization_percent=round(100.0 * busy / slots, 1),
        average_queue_time_seconds=round(day.wait_us / day.waited / 1e6, 3) if day.waited else 0.0,
        total_active_jobs=len(views.active),
        success_rate_percent=success_rate(day.completed, day.failed),
        jobs_last_24h=day.finished,
        gpu_hours_last_24h=round(day.gpu_us / 3.6e9, 3),
    )
