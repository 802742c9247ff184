"""A user's tally: counts of their jobs by status, and their submit times inside the rate-limit window.

A pure fold of job events (``count_status``, ``note_submit``); the per-user limits are checked against it.
"""

from __future__ import annotations

import bisect

import msgspec

from ledger.domain.quotas import QuotaDay

COUNTED = ("total", "pending", "running", "completed", "failed", "cancelled")  # the counts of a tally
RATE_WINDOW_US = 60_000_000  # any per-minute limit needs only the submits of the last minute (no cap on the limit)


class UserStats(msgspec.Struct, kw_only=True, gc=False):
    """Per-user counts by status, and the submit times inside the rate-limit window."""

    user_id: str
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    recent_submits: list[int] = []
    quota: QuotaDay | None = None  # today's use, for the quotas (ledger.domain.quotas)
    artifact_bytes: int = 0  # stored, unpruned artifacts (ledger.domain.artifact_quota)

    @property
    def active(self) -> int:
        return self.pending + self.running


def success_rate(completed: int, failed: int) -> float | None:
    """The one success rate (the dashboard's and the web page's): completed / (completed + failed), in
    percent to one decimal, over finished jobs; cancelled jobs count in neither; None with no such job."""
    done = completed + failed
    return round(100.0 * completed / done, 1) if done else None


def count_status(stats: UserStats, before: str | None, after: str) -> None:
    """A job moved from ``before`` (None: it is new) to ``after``; counts change in place."""
    setattr(stats, after, getattr(stats, after) + 1)
    if before is None:
        stats.total += 1
    else:
        setattr(stats, before, getattr(stats, before) - 1)


def note_submit(stats: UserStats, submitted_at: int) -> None:
    """Times only grow: drop those older than the window."""
    recent = stats.recent_submits
    first = bisect.bisect_right(recent, submitted_at - RATE_WINDOW_US)
    stats.recent_submits = [*recent[first:], submitted_at]
