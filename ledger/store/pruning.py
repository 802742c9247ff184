"""What retention reads from the ledger file and does to the blob store (the I/O around ``ledger.store.retention``).

A blob is removed only when no event of a job that stays names it: blobs are content-addressed, so two
jobs that printed the same bytes share one file. Code blobs are never removed (every job's submission
names its code, pruned or not), so a pruned job can still be read, re-run and audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import apsw

from ledger.domain.events import JobArtifactsPruned, JobPruned, decode_event
from ledger.store.backup import blob_path
from ledger.store.retention import artifacts_prunable, plan_artifact_prune, plan_prune, prunable
from ledger.store.state import Jobs

_DIGEST = re.compile(rb'"digest":"([0-9a-f]{64})"')
_JOB = "job-"


def ended_before(conn: apsw.Connection, cutoff_us: int) -> list[str]:
    """Ids of jobs whose job.finished was recorded before the cutoff and that were not pruned yet."""
    sql = """SELECT substr(stream, 5) FROM events WHERE type = 'job.finished' AND recorded_at < ?
             AND stream NOT IN (SELECT stream FROM events WHERE type = 'job.pruned') ORDER BY position"""
    return [row[0] for row in conn.execute(sql, (cutoff_us,))]


def pruned_events(conn: apsw.Connection) -> list[JobPruned]:
    found = []
    for (payload,) in conn.execute("SELECT payload FROM events WHERE type = 'job.pruned' ORDER BY position"):
        event = decode_event(bytes(payload))
        assert isinstance(event, JobPruned)
        found.append(event)
    return found


def artifacts_gone(conn: apsw.Connection) -> set[str]:
    """Jobs whose artifacts ARTIFACT_RETENTION removed (job.artifacts_pruned)."""
    sql = "SELECT substr(stream, 5) FROM events WHERE type = 'job.artifacts_pruned'"
    return {row[0] for row in conn.execute(sql)}


def kept_digests(conn: apsw.Connection, leaving: set[str], leaving_artifacts: frozenset[str] = frozenset()) -> set[str]:
    """Digests still named once the ``leaving`` jobs (and those pruned before) lose their outputs, and the
    ``leaving_artifacts`` jobs (and those pruned before) their artifacts: every event of any other
    stream, and every job's code (its job.submitted)."""
    pruned = pruned_events(conn)
    gone = leaving | {event.job_id for event in pruned}
    lost = {digest for event in pruned for digest in event.digests}  # named by a job.pruned: not required
    no_artifacts = leaving_artifacts | artifacts_gone(conn)
    sql = """SELECT stream, type, payload FROM events WHERE instr(payload, CAST('"digest":"' AS BLOB)) > 0"""
    kept: set[str] = set()
    for stream, type_, payload in conn.execute(sql):
        digests = {m.decode("ascii") for m in _DIGEST.findall(bytes(payload))}
        if type_ == "job.artifacts_stored":  # kept apart from outputs, until ARTIFACT_RETENTION takes them
            kept |= set() if stream[len(_JOB) :] in no_artifacts else digests
            continue
        if not (stream.startswith(_JOB) and stream[len(_JOB) :] in gone):
            kept |= digests  # a job that stays, or no job's
        elif type_ == "job.submitted":
            kept |= digests - lost  # a pruned job's code stays, unless a restore recorded it lost
    return kept


def jobs_naming(conn: apsw.Connection, digests: Iterable[str]) -> dict[str, list[str]]:
    """Which jobs' events name each digest: job id -> the digests among ``digests`` it names."""
    found: dict[str, set[str]] = {}
    sql = "SELECT DISTINCT stream FROM events WHERE stream LIKE 'job-%' AND instr(payload, CAST(? AS BLOB)) > 0"
    for digest in digests:
        for (stream,) in conn.execute(sql, (digest,)):
            found.setdefault(stream[len(_JOB) :], set()).add(digest)
    return {job_id: sorted(named) for job_id, named in found.items()}


def remove_blobs(root: Path, digests: Iterable[str]) -> tuple[int, int]:
    """Unlink the named blob files; (files removed, bytes freed). A file already gone is no error."""
    removed = freed = 0
    for digest in sorted(set(digests)):
        path = blob_path(root, digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed, freed = removed + 1, freed + size
    return removed, freed


def live_digests(conn: apsw.Connection) -> set[str]:
    """The blobs a sound ledger must hold: every one its events name, but the outputs of pruned jobs
    (one of those that a job still kept names again stays in)."""
    return kept_digests(conn, set())


def plan(conn: apsw.Connection, jobs: Jobs, cutoff_us: int, *, reason: str, by: str) -> list[JobPruned]:
    """The job.pruned events for every job ended before the cutoff and not pruned yet."""
    ended = [job for job_id in ended_before(conn, cutoff_us) if (job := jobs.get(job_id))]
    ended = [job for job in ended if prunable(job, cutoff_us)]
    return plan_prune(ended, kept_digests(conn, {job.job_id for job in ended}), reason=reason, by=by)


def artifact_plan(
    conn: apsw.Connection, jobs: Jobs, cutoff_us: int, *, reason: str, by: str
) -> list[JobArtifactsPruned]:
    """The job.artifacts_pruned events for every job with artifacts that ended before the cutoff."""
    sql = """SELECT DISTINCT substr(stream, 5) FROM events WHERE type = 'job.artifacts_stored' AND recorded_at < ?"""
    ended = [job for (job_id,) in conn.execute(sql, (cutoff_us,)) if (job := jobs.get(job_id))]
    ended = [job for job in ended if artifacts_prunable(job, cutoff_us)]
    keep = kept_digests(conn, set(), frozenset(job.job_id for job in ended))
    return plan_artifact_prune(ended, keep, reason=reason, by=by)


def leftover(conn: apsw.Connection, events: Iterable[JobPruned | JobArtifactsPruned]) -> set[str]:
    """The digests the committed events removed that no job names again since the plan (a job that
    just ended with the very same bytes keeps its file)."""
    return {digest for event in events for digest in event.digests} - live_digests(conn)
