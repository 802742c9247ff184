"""Finished-job tallies by minute and by hour: the fold behind the 24 h figures (jobs, waits, GPU time).

The views keep two dicts, ``minutes`` and ``hours``; these functions change them only by putting new
tallies in, never by changing one in place, as a published read snapshot may share the old ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger.domain.jobs import JobState

MINUTE_US = 60_000_000
DAY_MINUTES = 1440
KEPT_MINUTES = 2 * DAY_MINUTES  # the health window is one day: older buckets are dropped past this


class Minute(msgspec.Struct, gc=False):
    """Jobs finished in one minute: how many, how many completed, and their queue waits (for the 24 h figures)."""

    finished: int = 0
    completed: int = 0
    waited: int = 0  # jobs that started, whose waits are summed below
    wait_us: int = 0
    gpu_us: int = 0  # GPUs x charged time (environment set-up and run) of the jobs that ended
    failed: int = 0  # for the success rate (ledger.domain.users.success_rate): cancelled jobs count in neither


def summed(tallies: Iterable[Minute | None]) -> Minute:
    """A new tally holding the sum of ``tallies`` (None: an empty minute)."""
    total = Minute()
    for tally in tallies:
        if tally is not None:
            total.finished += tally.finished
            total.completed += tally.completed
            total.failed += tally.failed
            total.waited += tally.waited
            total.wait_us += tally.wait_us
            total.gpu_us += tally.gpu_us
    return total


def tally_finish(minutes: dict[int, Minute], hours: dict[int, Minute], job: JobState, completed_at: int) -> None:
    """Count a job that finished at ``completed_at`` in its minute and its hour."""
    minute = completed_at // MINUTE_US
    if minute not in minutes:
        minutes[minute] = Minute()
        if len(minutes) > KEPT_MINUTES:
            _drop_minutes_before(minutes, hours, max(minutes) - DAY_MINUTES)
    first_started = job.first_started_at
    # Every attempt's charged GPU time counts (a set-up too, even one that failed before any run).
    gpu_us = sum(past.gpu_us(job.charged_gpus) for past in job.history)
    if job.charged_from:
        gpu_us += job.charged_gpus * (completed_at - job.charged_from)
    this = Minute(finished=1, completed=int(job.status == "completed"), failed=int(job.status == "failed"))
    this.gpu_us = gpu_us
    if first_started:  # the wait ends when the job first ran
        this.waited, this.wait_us = 1, job.waited_us(completed_at)
    minutes[minute] = summed((minutes[minute], this))
    hours[minute // 60] = summed((hours.get(minute // 60), this))


def _drop_minutes_before(minutes: dict[int, Minute], hours: dict[int, Minute], first: int) -> None:
    for old in [m for m in minutes if m < first]:
        del minutes[old]
    for old in [h for h in hours if h * 60 < first]:  # the hour cut in two is summed again
        del hours[old]
    if first % 60:
        hours[first // 60] = summed(minutes.get(m) for m in range(first, first - first % 60 + 60))


def hours_of(minutes: dict[int, Minute]) -> dict[int, Minute]:
    """The hourly tallies of ``minutes`` (after setting them wholesale: a snapshot)."""
    by_hour: dict[int, list[Minute]] = {}
    for minute, tally in minutes.items():
        by_hour.setdefault(minute // 60, []).append(tally)
    return {hour: summed(tallies) for hour, tallies in by_hour.items()}


def day_tally(minutes: dict[int, Minute], hours: dict[int, Minute], now: int) -> Minute:
    """Jobs finished in the 24 h before ``now`` (by whole minutes): 24 hours and the minutes at both ends."""
    last = now // MINUTE_US
    first = last - DAY_MINUTES
    first_hour, end_hour = -(-first // 60), (last + 1) // 60  # whole hours inside [first, last]
    parts = [minutes.get(m) for m in range(first, first_hour * 60)]
    parts += [hours.get(h) for h in range(first_hour, end_hour)]
    parts += [minutes.get(m) for m in range(end_hour * 60, last + 1)]
    return summed(parts)
