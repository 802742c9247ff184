"""Per-user quotas: submissions and GPU-hours per UTC day, folded from job events into one bucket per user.

A fixed day (reset at 00:00 UTC) rather than a sliding window: a researcher can tell when the quota
comes back, the fold keeps one bucket per user whatever the traffic, and a refund either lands in the
bucket it was counted in or in a day already over (then there is nothing to give back).
Endings that are the platform's fault (``PLATFORM_REASONS``) are never charged: a job that ends so is
refunded its submission, and an attempt lost that way adds no GPU time.
"""

from __future__ import annotations

import math

import msgspec

from ledger.domain.attempts import PLATFORM_REASONS
from ledger.domain.events import JobEvent, JobFinished, JobRequeued, JobRetried, JobSubmitted
from ledger.domain.jobs import JobState

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


class QuotaDay(msgspec.Struct, kw_only=True, gc=False):
    """What a user used on one UTC day (``day``: days since the Unix epoch)."""

    day: int
    submissions: int = 0
    gpu_us: int = 0


class Charge(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One change to a user's day: counted at ``at``; a refund gives back a submission of ``refund_day``."""

    at: int
    submissions: int = 0
    gpu_us: int = 0
    refund_day: int | None = None


CHARGED: frozenset[type] = frozenset({JobSubmitted, JobRetried, JobFinished, JobRequeued})  # the only events that cost


def charges_of(before: JobState | None, after: JobState, event: JobEvent, at: int) -> list[Charge]:
    """What one job event costs its user (pure: the live fold and a replay both call it)."""
    match event:
        case JobSubmitted():
            return [Charge(at=at, submissions=1)]
        case JobRetried() | JobFinished() | JobRequeued():  # requeued: only a run the idle policy took back
            assert before is not None
            charges = []
            begun = before.charged_from  # the set-up of a declared environment is charged like the run
            if begun is not None and event.reason not in PLATFORM_REASONS:
                charges.append(Charge(at=at, gpu_us=before.charged_gpus * (at - begun)))
            if isinstance(event, JobFinished) and event.reason in PLATFORM_REASONS:
                charges.append(Charge(at=at, submissions=-1, refund_day=after.created_at // DAY_US))
            return charges
    return []


def apply_charge(current: QuotaDay | None, charge: Charge) -> QuotaDay:
    """The user's day after ``charge``: a new day starts from zero."""
    day = charge.at // DAY_US
    tally = current if current is not None and current.day >= day else QuotaDay(day=day)
    if charge.refund_day is not None:
        if charge.refund_day == tally.day and tally.submissions > 0:
            tally.submissions -= 1
        return tally
    tally.submissions += charge.submissions
    tally.gpu_us += charge.gpu_us
    return tally


class QuotaLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The quotas a user is held to (0: unlimited)."""

    submissions: int = 0
    gpu_hours: float = 0.0


class QuotaFigure(msgspec.Struct, frozen=True, kw_only=True):
    """One quota as a user sees it now."""

    quota: str  # "submissions" or "gpu_hours"
    limit: float  # 0: unlimited
    used: float
    left: float | None  # None: unlimited
    resets_at_us: int


def figures(today: QuotaDay | None, limits: QuotaLimits, now: int) -> list[QuotaFigure]:
    """Both quotas as of ``now`` (a bucket of an earlier day counts as nothing used)."""
    day = now // DAY_US
    used = today if today is not None and today.day == day else QuotaDay(day=day)
    resets = (day + 1) * DAY_US
    hours = round(used.gpu_us / HOUR_US, 4)
    return [
        QuotaFigure(
            quota="submissions",
            limit=limits.submissions,
            used=used.submissions,
            left=max(0, limits.submissions - used.submissions) if limits.submissions else None,
            resets_at_us=resets,
        ),
        QuotaFigure(
            quota="gpu_hours",
            limit=limits.gpu_hours,
            used=hours,
            left=round(max(0.0, limits.gpu_hours - hours), 4) if limits.gpu_hours else None,
            resets_at_us=resets,
        ),
    ]


def exhausted(today: QuotaDay | None, limits: QuotaLimits, now: int) -> QuotaFigure | None:
    """The first quota with nothing left (checked at submit; a running job is never stopped for it)."""
    for figure in figures(today, limits, now):
        if figure.left is not None and figure.left <= 0:
            return figure
    return None


def retry_after_s(figure: QuotaFigure, now: int) -> int:
    return max(1, math.ceil((figure.resets_at_us - now) / 1_000_000))
