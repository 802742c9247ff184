"""Commands of job arrays and bulk actions: an array and its tasks in one write, the release of held
tasks, many cancels in one write. Checked like a single submission (``ledger.store.commands``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import AnyEvent, ArraySubmitted, JobDependenciesMet, JobQueued, JobScanned, JobSubmitted
from ledger.domain.jobs import decide_cancel, decide_queue
from ledger.store.commands import (  # the single submission's checks, shared as they are
    SubmitLimits,
    _check_limits,
    _check_policy,
    job_of,
)
from ledger.store.dependencies import check_at_submit
from ledger.store.state import LedgerState
from ledger.store.store import Write


def _max_active(views: LedgerState, user_id: str, limits: SubmitLimits | None) -> int:
    """The user's active-submission cap (0: none): their own policy's, else the global one."""
    if limits is None:
        return 0
    account = views.shares.get(user_id)
    if account is not None and account.max_active_jobs is not None:
        return account.max_active_jobs
    return limits.max_active


def array_width(max_running: int | None, tasks: int, cap: int) -> int:
    """How many of an array's tasks may be released and not yet ended at once: its ``%K``, no more
    than the user's active-job cap (the array being their one submission), and at least one."""
    width = min(max_running or tasks, tasks)
    return max(1, min(width, cap) if cap else width)


def submit_array(
    array: ArraySubmitted,
    tasks: list[JobSubmitted],
    *,
    static_scan: JobScanned | None,
    review_pending: bool,
    limits: SubmitLimits | None,
    now: int,
    actor: str,
    idempotency_key: str | None,
    fingerprint: bytes,
    admin: bool = False,
) -> Write:
    """Accept an array and all its tasks in one step, checked as one submission; the first ``width``
    tasks are queued at once, the rest wait held until the placement step releases them (all wait
    while the array's dependencies are not met)."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        first = tasks[0]
        _check_policy(first, views.shares.get(first.user_id))
        if limits is not None:
            _check_limits(views, first.user_id, limits, now, first.gpus)
        width = array_width(array.max_running, len(tasks), _max_active(views, first.user_id, limits))
        after = array.after
        waits = after is not None and check_at_submit(views, after, first.user_id, admin=admin) == "wait"
        events: list[AnyEvent] = [msgspec.structs.replace(array, width=width)]
        for task in tasks:
            events.append(msgspec.structs.replace(task, array_width=width))
            if after is not None and not waits:
                events.append(JobDependenciesMet(job_id=task.job_id))
            if static_scan is not None:
                events.append(msgspec.structs.replace(static_scan, job_id=task.job_id))
            if review_pending:
                events.append(JobScanned(job_id=task.job_id, verdict="pending", scanner="llm"))
        if not review_pending and not waits:
            events.extend(JobQueued(job_id=task.job_id, reason="submitted") for task in tasks[:width])
        return events

    return Write(decide=decide, actor=actor, idempotency_key=idempotency_key, fingerprint=fingerprint)


def release_tasks(array_id: str) -> Write:
    """Queue an array's next held tasks, in index order, up to its width (nothing when it has no room)."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        progress = views.arrays.get(array_id)
        if progress is None:
            return []
        return [e for job_id in progress.to_release() for e in decide_queue(job_of(views, job_id), reason="released")]

    return Write(decide=decide, actor="scheduler")


def cancel_jobs(job_ids: list[str], *, by: str, actor: str) -> Write:
    """Cancel many jobs in one step (an array, some of its tasks, all of a user's): those already ended
    or cancelling are left as they are; nothing left to cancel is a 409."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        events: list[AnyEvent] = []
        for job_id in job_ids:
            job = views.jobs.get(job_id)
            if job is not None and not job.is_terminal and not job.cancel_requested:
                events.extend(decide_cancel(job, by=by))
        if not events:
            raise InvalidTransition("Nothing to cancel: every job named has already ended or is cancelling")
        return events

    return Write(decide=decide, actor=actor)
