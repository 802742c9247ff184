"""Commands of job dependencies: the check at submit (every id known and the caller's, none already
unsatisfiable) and the decision on a waiting job once a dependency ended (``dependencies_due``)."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.domain.arrays import is_array_id, task_id
from ledger.domain.dependencies import Verdict, decide_dependencies, dependency_ids, verdict_of
from ledger.domain.errors import InvalidSpec
from ledger.domain.events import After, AnyEvent
from ledger.store.state import LedgerState
from ledger.store.store import Write

Found = tuple[str, str | None]  # a dependency's owner and its final status (None: not ended yet)


def _array(views: LedgerState, array_id: str) -> Found | None:
    """An array's owner and end: ``completed`` when every task completed, else ``failed``."""
    progress = views.arrays.get(array_id)
    if progress is not None:
        return progress.user_id, None
    statuses, owner, ordinal = set(), None, 0
    while (task := views.jobs.get(task_id(array_id, ordinal))) is not None and task.array_id == array_id:
        owner = task.user_id
        statuses.add(task.status)
        ordinal += 1
    if owner is None:
        return None
    return owner, "completed" if statuses == {"completed"} else "failed"


def find(views: LedgerState, dep: str) -> Found | None:
    """A job's or an array's owner and final status; None: no such job or array."""
    if is_array_id(dep):
        return _array(views, dep)
    job = views.jobs.get(dep)
    if job is None:
        return None
    return job.user_id, job.status if job.is_terminal else None


def ended_of(views: LedgerState, after: After, seen: dict[str, Found | None] | None = None) -> dict[str, str | None]:
    """Each dependency's final status (None while it runs, or when it is not found); ``seen``: the
    lookups of one decision, shared by its jobs (an ended array is read once, not once per waiter)."""
    seen = {} if seen is None else seen
    ended: dict[str, str | None] = {}
    for dep in dependency_ids(after):
        if dep not in seen:
            seen[dep] = find(views, dep)
        found = seen[dep]
        ended[dep] = found[1] if found is not None else None
    return ended


def check_at_submit(views: LedgerState, after: After, user_id: str, *, admin: bool) -> Verdict:
    """Unknown ids, and another user's (unless ``admin``), are a 400 naming them; so is a dependency
    that already ended so that it can never be met. Met already: the job is queued at once."""
    ended: dict[str, str | None] = {}
    missing: list[str] = []
    for dep in dependency_ids(after):
        found = find(views, dep)
        if found is None or (found[0] != user_id and not admin):
            missing.append(dep)  # another user's: "not found", as for a job they cannot see
        else:
            ended[dep] = found[1]
    if missing:
        raise InvalidSpec(f"Invalid field after: no job or array {', '.join(missing)} of yours")
    verdict, why = verdict_of(after, ended)
    if verdict == "never":
        raise InvalidSpec(f"Invalid field after: dependency can never be satisfied: {why}")
    return verdict


def decide_waiting(job_ids: list[str]) -> Write:
    """Queue the waiting jobs whose dependencies are met, and cancel those with one that never can be,
    in one write (a job that waits on is left as it is)."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        events: list[AnyEvent] = []
        seen: dict[str, Found | None] = {}
        for job_id in job_ids:
            job = views.jobs.get(job_id)
            if job is not None and job.after is not None:
                events.extend(decide_dependencies(job, ended_of(views, job.after, seen)))
        return events

    return Write(decide=decide, actor="scheduler")
