"""The jobs table's search: filters answered from indexes on the job projection (migration 0004).

The projection table trails the log by up to a second (it is written in batches), so a search is
the indexed page plus the few jobs submitted since the table's checkpoint; the caller re-checks every
candidate against the live views, which are the truth.
"""

from __future__ import annotations

from collections.abc import Iterable

import apsw
import msgspec

from ledger.domain.jobs import JobState
from projections import tables
from projections.snapshots import position_at
from projections.views import Views

COUNT_CAP = 10_000  # beyond this the table says "10000+": an exact count would read every row


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None = None
    status: str | None = None
    competition_id: str | None = None
    node: str | None = None
    since_us: int | None = None  # submitted at or after
    until_us: int | None = None  # submitted before
    before: int | None = None  # page cursor: submit positions below this one

    def matches(self, job: JobState) -> bool:
        return (
            (self.user_id is None or job.user_id == self.user_id)
            and (self.status is None or job.status == self.status)
            and (self.competition_id is None or job.competition_id == self.competition_id)
            and (self.node is None or job.node == self.node)
            and (self.since_us is None or job.created_at >= self.since_us)
            and (self.until_us is None or job.created_at < self.until_us)
            and (self.before is None or job.position < self.before)
        )


_COMPETITION = "json_extract(CAST(data AS TEXT), '$.competition_id')"
_NODE = "json_extract(CAST(data AS TEXT), '$.node')"


def _one(conn: apsw.Connection, sql: str, values: tuple[object, ...] = ()) -> int:
    row = conn.execute(sql, values).fetchone()
    assert row is not None  # an aggregate always answers one row
    return int(row[0])


def _where(conn: apsw.Connection, flt: JobFilter) -> tuple[str, list[object]]:
    clauses: list[str] = ["1"]
    values: list[object] = []
    for column, value in (
        ("user_id", flt.user_id),
        ("status", flt.status),
        (_COMPETITION, flt.competition_id),
        (_NODE, flt.node),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if flt.since_us is not None:  # recorded at or after since: past the last position before it
        clauses.append("position > ?")
        values.append(position_at(conn, flt.since_us - 1))
    if flt.until_us is not None:  # recorded before until
        clauses.append("position <= ?")
        values.append(position_at(conn, flt.until_us - 1))
    if flt.before is not None:
        clauses.append("position < ?")
        values.append(flt.before)
    return " AND ".join(clauses), values


def page_ids(conn: apsw.Connection, flt: JobFilter, limit: int) -> list[str]:
    """Ids of the newest ``limit`` matching jobs in the table, plus those submitted since its checkpoint."""
    where, values = _where(conn, flt)
    rows = conn.execute(f"SELECT job_id FROM proj_jobs WHERE {where} ORDER BY position DESC LIMIT ?", (*values, limit))
    tail = conn.execute(
        "SELECT substr(stream, 5) FROM events WHERE type = 'job.submitted' AND position > ?",
        (tables.checkpoint(conn),),
    )
    return [*(r[0] for r in tail), *(r[0] for r in rows)]


def counted(views: Views, flt: JobFilter) -> int | None:
    """The exact count from the fold's tallies when the filter is a user, a status or both (or none);
    None for the filters only the table can count."""
    if (flt.competition_id, flt.node, flt.since_us, flt.until_us) != (None, None, None, None):
        return None
    tally = views.job_counts if flt.user_id is None else views.users.get(flt.user_id)
    if tally is None:
        return 0
    return int(tally.total if flt.status is None else getattr(tally, flt.status, 0))


def count(conn: apsw.Connection, flt: JobFilter) -> int:
    """Matching jobs in the table, counted up to ``COUNT_CAP`` (the cursor is ignored)."""
    where, values = _where(conn, msgspec.structs.replace(flt, before=None))
    sql = f"SELECT count(*) FROM (SELECT 1 FROM proj_jobs WHERE {where} LIMIT ?)"
    return _one(conn, sql, (*values, COUNT_CAP + 1))


def pick(candidates: Iterable[JobState | None], flt: JobFilter, limit: int) -> list[JobState]:
    """The newest ``limit`` candidates that match ``flt`` now, newest first, each once."""
    seen: dict[str, JobState] = {}
    for job in candidates:
        if job is not None and job.job_id not in seen and flt.matches(job):
            seen[job.job_id] = job
    return sorted(seen.values(), key=lambda j: j.position, reverse=True)[:limit]


def as_of_page(views: Views, flt: JobFilter, limit: int) -> tuple[list[JobState | None], int]:
    """The newest ``limit`` matching jobs as past views stood (those finished by their snapshot read
    from the table's indexes, the rest from memory), and how many match (the table's part capped)."""
    rows = views.jobs.rows
    if rows is None:  # views replayed whole (a point older than every snapshot): all in memory
        found: list[JobState | None] = [j for j in views.jobs.values() if flt.matches(j)]
        return found, len(found)
    conn = rows.conn()
    where, values = _where(conn, flt)
    page: list[JobState | None] = list(views.jobs.newest([], flt.matches, where, values, limit))
    uncursored = msgspec.structs.replace(flt, before=None)
    where, values = _where(conn, uncursored)
    in_memory = sum(1 for job in views.jobs.overlay([]).values() if uncursored.matches(job))
    return page, rows.count(where, values, COUNT_CAP + 1) + in_memory
