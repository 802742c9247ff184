"""Retention: which ended jobs lose their output blobs, and the ``job.pruned`` facts that say so.

Pure: the caller reads the jobs and the digests still named elsewhere, and removes the files after
the events have committed (an event before its files go: a crash in between leaves blobs that are
merely kept, never a blob missing without a record of why).
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.domain.clock import iso
from ledger.domain.errors import InvalidTransition
from ledger.domain.events import AnyEvent, Blob, JobArtifactsPruned, JobPruned
from ledger.domain.jobs import JobState, decide_cancel
from ledger.store.commands import job_of
from ledger.store.state import LedgerState
from ledger.store.store import Write

DAY_US = 86_400 * 1_000_000


def output_blobs(job: JobState) -> list[Blob]:
    """The blobs a job produced (every attempt's console output, its results); never its code."""
    found = [job.stdout, job.stderr, job.results]
    for past in job.history:
        found += [past.stdout, past.stderr]
    return [blob for blob in found if blob is not None]


def prunable(job: JobState, cutoff_us: int) -> bool:
    """An ended job, ended before the cutoff, not pruned yet."""
    return job.is_terminal and job.pruned_at is None and (job.completed_at or cutoff_us) < cutoff_us


def plan_prune(jobs: Sequence[JobState], keep: set[str], *, reason: str, by: str) -> list[JobPruned]:
    """One ``job.pruned`` per job with its outputs not in ``keep`` (blobs named by jobs that stay, and
    every job's code); a blob shared by several pruned jobs is listed by each, its bytes counted once."""
    counted: set[str] = set()
    events = []
    for job in jobs:
        sizes = {blob.digest: blob.size for blob in output_blobs(job) if blob.digest not in keep}
        freed = sum(size for digest, size in sizes.items() if digest not in counted)
        counted.update(sizes)
        events.append(JobPruned(job_id=job.job_id, digests=sorted(sizes), bytes_freed=freed, reason=reason, by=by))
    return events


def decide_prune(job: JobState, pruned: JobPruned) -> list[AnyEvent]:
    """A job is pruned once, and only once it has ended."""
    if not job.is_terminal:
        raise InvalidTransition(f"job {job.job_id} has not ended: its output cannot be pruned")
    if job.pruned_at is not None:
        raise InvalidTransition(f"job {job.job_id} was already pruned")
    return [pruned]


def pruned_message(job: JobState) -> str | None:
    """What reads of a pruned job say in place of its output (None: not pruned)."""
    if job.pruned_at is None:
        return None
    day = (iso(job.pruned_at) or "")[:10]
    return f"output pruned on {day} ({job.pruned_reason or 'retention'})"


def prune_write(events: Sequence[JobPruned], *, by: str) -> Write:
    """Append the planned events in one transaction, each checked against the job as it is then."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        return [out for event in events for out in decide_prune(job_of(views, event.job_id), event)]

    return Write(decide=decide, actor=by)


def artifacts_prunable(job: JobState, cutoff_us: int) -> bool:
    """An ended job with artifacts, ended before the cutoff, whose artifacts are not pruned yet."""
    return bool(job.artifacts) and job.artifacts_pruned_at is None and prunable_time(job, cutoff_us)


def prunable_time(job: JobState, cutoff_us: int) -> bool:
    return job.is_terminal and (job.completed_at or cutoff_us) < cutoff_us


def plan_artifact_prune(jobs: Sequence[JobState], keep: set[str], *, reason: str, by: str) -> list[JobArtifactsPruned]:
    """One ``job.artifacts_pruned`` per job: its artifact blobs not in ``keep``, bytes counted once."""
    counted: set[str] = set()
    events = []
    for job in jobs:
        sizes = {a.digest: a.size for a in job.artifacts if a.digest not in keep}
        freed = sum(size for digest, size in sizes.items() if digest not in counted)
        counted.update(sizes)
        events.append(
            JobArtifactsPruned(job_id=job.job_id, digests=sorted(sizes), bytes_freed=freed, reason=reason, by=by)
        )
    return events


def artifact_prune_write(events: Sequence[JobArtifactsPruned], *, by: str) -> Write:
    """Append the planned events in one transaction; a job's artifacts are pruned once, after it ended."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        out: list[AnyEvent] = []
        for event in events:
            job = job_of(views, event.job_id)
            if not job.is_terminal or job.artifacts_pruned_at is not None:
                raise InvalidTransition(f"job {job.job_id}: its artifacts cannot be pruned now")
            out.append(event)
        return out

    return Write(decide=decide, actor=by)


def artifacts_pruned_message(job: JobState) -> str | None:
    if job.artifacts_pruned_at is None:
        return None
    return f"artifacts pruned on {(iso(job.artifacts_pruned_at) or '')[:10]} (ARTIFACT_RETENTION)"


LOST_REASON = "lost with the server: not on the replica yet when it went"


def lost_writes(lost: dict[str, list[str]], *, by: str) -> list[Write]:
    """A restore whose replica lacked some blobs says so in the ledger: a job that never started is
    cancelled (its code is gone: it can never run), then every such job that has ended gets one
    ``job.pruned`` naming its lost blobs, so reads and ``audit verify`` tell the truth."""

    def cancel(views: LedgerState) -> Sequence[AnyEvent]:
        events: list[AnyEvent] = []
        for job_id in sorted(lost):
            job = job_of(views, job_id)
            if not job.is_terminal and job.started_at is None and job.node is None:
                events += decide_cancel(job, by=by)
        return events

    def prune(views: LedgerState) -> Sequence[AnyEvent]:
        events: list[AnyEvent] = []
        for job_id, digests in sorted(lost.items()):
            job = job_of(views, job_id)
            if job.is_terminal and job.pruned_at is None:
                events.append(JobPruned(job_id=job_id, digests=digests, bytes_freed=0, reason=LOST_REASON, by=by))
        return events

    return [Write(decide=cancel, actor=by), Write(decide=prune, actor=by)]
