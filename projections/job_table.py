"""Jobs by id: the unfinished and the recently finished in memory, older finished ones read from ``proj_jobs``.

A finished job never changes again, and once the writer has flushed its row that row is its final
state. So memory holds what still moves (every job not yet terminal) and a bounded cache of the
recently finished; the oldest finished job leaves the cache only at a flush *after* the one that
wrote its row, when that row's transaction has committed, so a reader always finds a job in one
place or the other. Only the folding thread changes a table; readers hold a ``frozen_copy`` taken
after a commit, which nothing changes. Rows are read on a read-only connection of the reading
thread's own (the writer thread, the event loop and worker threads each have one per ledger file: an
APSW connection is never used from two threads at once).

A table may also stand for a past point (``Horizon``): rows then count only for jobs that had
finished by the point, each as it stood then, and the jobs in memory are the ones active then or
touched since.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import apsw
import msgspec

from ledger.domain.events import JobEvent, decode_event
from ledger.domain.jobs import TERMINAL, JobState, evolve_job
from ledger.store.schema import connect

FINISHED_CACHED = 10_000  # recently finished jobs kept in memory (settings: finished_jobs_cached)
BACKFILL = "finished_rows"  # checkpoint row: rows of jobs finished by its position may still be missing
_job = msgspec.json.Decoder(JobState).decode


_threads = threading.local()  # per thread: read-only connections by ledger path, shared by every JobRows


def _connection(path: str) -> apsw.Connection:
    """This thread's read connection to ``path`` (opening one costs milliseconds: past views, one per
    position, would pay it on the event loop for every new point)."""
    conns: dict[str, apsw.Connection] | None = getattr(_threads, "conns", None)
    if conns is None:
        conns = _threads.conns = {}
    conn = conns.get(path)
    if conn is None:
        conn = conns[path] = connect(path, readonly=True)
    return conn


def backfill_until(conn: apsw.Connection) -> int | None:
    """The position up to which finished jobs' rows are still being rebuilt (``projections.backfill``)."""
    row = conn.execute("SELECT position FROM projection_checkpoints WHERE name = ?", (BACKFILL,)).fetchone()
    return int(row[0]) if row is not None else None


def fold_stream(conn: apsw.Connection, job_id: str, until: int) -> JobState | None:
    """A job's state at ``until`` from its own events (the stream's index: a handful of rows)."""
    state: JobState | None = None
    for position, payload, recorded_at in conn.execute(
        "SELECT position, payload, recorded_at FROM events WHERE stream = ? AND position <= ? ORDER BY version",
        (f"job-{job_id}", until),
    ):
        event = decode_event(payload)
        assert isinstance(event, JobEvent)
        state = evolve_job(state, event, position=position, at=recorded_at)
    return state


@dataclass(frozen=True)
class Horizon:
    """A past point: rows count only for jobs submitted by ``position`` and finished by ``recorded_at``.

    ``recorded_at`` never decreases along positions, so a job finished at or before ``position``
    has ``completed_at <= recorded_at``; a job finished just after it at the same instant passes the
    filter too, but it was active at the point and so is in memory, which wins over its row.
    """

    position: int
    recorded_at: int

    def clause(self) -> tuple[str, tuple[object, ...]]:
        # Both bounds may be index ranges: a point in the middle of the log seeks to it.
        return " AND position <= ? AND completed_at <= ?", (self.position, self.recorded_at)


class JobRows:
    """Reads of ``proj_jobs`` for one ledger file, each thread on a read-only connection of its own."""

    def __init__(self, path: str, horizon: Horizon | None = None, head: Callable[[], int] | None = None) -> None:
        """``head``: the live views' position. Rows of jobs submitted past it were written by another
        process ahead of this one's fold, and do not count until the fold gets there."""
        self.path = path
        self.horizon = horizon
        self.head = head
        self.complete = False  # set once no backfill is seen: it never starts again in this process

    def at(self, position: int) -> JobRows:
        """The same rows as a reader at ``position`` sees them (a published snapshot's rows)."""
        rows = JobRows(self.path, self.horizon, head=lambda: position)
        rows.complete = self.complete
        return rows

    def conn(self) -> apsw.Connection:
        return _connection(self.path)

    def close(self) -> None:
        """Close this thread's connection to the file (the others close as their threads end; a later
        read opens a new one)."""
        conn = getattr(_threads, "conns", {}).pop(self.path, None)
        if conn is not None:
            conn.close()

    def _clause(self) -> tuple[str, tuple[object, ...]]:
        if self.horizon is not None:
            return self.horizon.clause()
        # Unary plus: the head is past nearly every row, a filter, never the index to search by.
        return (" AND +position <= ?", (self.head(),)) if self.head is not None else ("", ())

    def _columns(self) -> tuple[str, tuple[object, ...]]:
        # As of a past point, the job's stream version there too (a seek of the stream's unique index).
        if self.horizon is None:
            return "data, NULL", ()
        then = "SELECT max(version) FROM events WHERE stream = 'job-' || proj_jobs.job_id AND events.position <= ?"
        return f"data, ({then})", (self.horizon.position,)

    def _state(self, data: bytes, version: int | None) -> JobState:
        """The job a row holds, or, when the row is ahead of the horizon (an event after the job's end,
        ``AFTER_END``, came later: its pruning, a notification's outcome), the job folded from its own
        events up to the horizon, as a replay to there has it."""
        job = _job(data)
        if self.horizon is None or version is None or job.version == version:
            return job
        return fold_stream(self.conn(), job.job_id, self.horizon.position) or job

    def one(self, job_id: str) -> JobState | None:
        conn = self.conn()
        extra, values = self._clause()
        columns, first = self._columns()
        sql = f"SELECT {columns} FROM proj_jobs WHERE job_id = ?{extra}"
        row = conn.execute(sql, (*first, job_id, *values)).fetchone()
        if row is not None:
            return self._state(row[0], row[1])
        if self.complete:
            return None
        if backfill_until(conn) is None:
            self.complete = True
            return None
        # Its row may not be rebuilt yet: the job's own stream says (only a finished job counts here,
        # as a row would: an active one is in memory).
        until = self.horizon.position if self.horizon is not None else (self.head() if self.head else 2**62)
        job = fold_stream(conn, job_id, until)
        return job if job is not None and job.status in TERMINAL else None

    def scan(self, where: str, values: Sequence[object], order: str, skip: Callable[[str], bool]) -> Iterator[JobState]:
        """Matching rows in ``order``, lazily (the caller stops when it has enough), less the ids ``skip`` names."""
        extra, more = self._clause()
        columns, first = self._columns()
        cursor = self.conn().cursor()
        try:
            sql = f"SELECT job_id, {columns} FROM proj_jobs WHERE {where}{extra} ORDER BY {order}"
            for job_id, data, version in cursor.execute(sql, (*first, *values, *more)):
                if not skip(job_id):
                    yield self._state(data, version)
        finally:
            cursor.close()  # an abandoned statement would hold its read snapshot open

    def ids_with_prefix(self, prefix: str, user_id: str | None, cap: int) -> list[str]:
        """Up to ``cap`` ids of rows starting with ``prefix`` (one user's, or anyone's): a range of the
        primary key, since every id is upper-case Crockford base32 and ``~`` sorts after all of it."""
        extra, more = self._clause()
        mine, values = (" AND user_id = ?", (user_id,)) if user_id is not None else ("", ())
        sql = f"SELECT job_id FROM proj_jobs WHERE job_id >= ? AND job_id < ?{mine}{extra} LIMIT ?"
        rows = self.conn().execute(sql, (prefix, prefix + "~", *values, *more, cap)).fetchall()
        return [str(row[0]) for row in rows]

    def count(self, where: str, values: Sequence[object], cap: int) -> int:
        extra, more = self._clause()
        sql = f"SELECT count(*) FROM (SELECT 1 FROM proj_jobs WHERE {where}{extra} LIMIT ?)"
        row = self.conn().execute(sql, (*values, *more, cap)).fetchone()
        return int(row[0]) if row is not None else 0


class JobTable:
    """Every job by id, wherever it is kept (the only mutator is the thread that folds)."""

    def __init__(self, rows: JobRows | None = None, *, cached: int = FINISHED_CACHED) -> None:
        self.active: dict[str, JobState] = {}
        # oldest first, evicted from the front; a plain dict, as a publication copies it per commit (an
        # OrderedDict copies thirty times slower)
        self.finished: dict[str, JobState] = {}
        self.rows = rows  # None: nothing leaves memory (a replay, a test's views)
        self.cached = cached
        self.flushing: frozenset[str] = frozenset()  # rows written by the last flush, maybe not committed yet

    def frozen_copy(self, position: int) -> JobTable:
        """The table as it is now, for readers: its own dicts, rows that count up to ``position``."""
        table = JobTable(self.rows.at(position) if self.rows is not None else None, cached=self.cached)
        table.active, table.finished, table.flushing = self.active.copy(), self.finished.copy(), self.flushing
        return table

    # --- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobState | None:
        job = self.active.get(job_id)
        if job is None:
            job = self.finished.get(job_id)
        if job is None and self.rows is not None:
            job = self.rows.one(job_id)
        return job

    def __getitem__(self, job_id: str) -> JobState:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self.get(job_id) is not None

    def resident(self, job_id: str) -> JobState | None:
        """The job if it is in memory (what a fold may evolve: rows can be ahead of a fold at start-up)."""
        job = self.active.get(job_id)
        return job if job is not None else self.finished.get(job_id)

    def __iter__(self) -> Iterator[str]:
        """The ids in memory: every job when nothing is kept in rows (replays, tests), else the hot ones."""
        return iter([*self.active, *self.finished])

    def __len__(self) -> int:
        return len(self.active) + len(self.finished)

    def values(self) -> list[JobState]:
        return [*self.active.values(), *self.finished.values()]

    def items(self) -> list[tuple[str, JobState]]:
        return [*self.active.items(), *self.finished.items()]

    def overlay(self, dirty: Sequence[str]) -> dict[str, JobState]:
        """The jobs whose state in memory replaces (or adds to) what their rows say.

        Live: those changed since the last flush (``dirty``, read first) and those of the flush that
        may not have committed yet (the writer sets ``flushing`` before it clears ``dirty``). As of a
        point, or with no rows at all: every job in memory.
        """
        if self.rows is None or self.rows.horizon is not None:
            return dict(self.items())
        ids = [*dirty, *self.flushing]
        return {job_id: job for job_id in ids if (job := self.resident(job_id)) is not None}

    def newest(
        self,
        dirty: Sequence[str],
        matches: Callable[[JobState], bool],
        where: str,
        values: Sequence[object],
        limit: int,
    ) -> list[JobState]:
        """The newest ``limit`` jobs that ``matches`` (and the SQL ``where``, its equal on rows) accept."""
        overlay = self.overlay(dirty)
        mine = heapq.nlargest(limit, (j for j in overlay.values() if matches(j)), key=lambda j: j.position)
        stored: list[JobState] = []
        if self.rows is not None and limit > 0:
            for job in self.rows.scan(where, values, "position DESC", overlay.__contains__):
                if matches(job):
                    stored.append(job)
                    if len(stored) == limit:
                        break
        return heapq.nlargest(limit, [*mine, *stored], key=lambda j: j.position)

    def ids_with_prefix(self, prefix: str, user_id: str | None, cap: int) -> list[str]:
        """Up to ``cap`` job ids starting with ``prefix``, sorted (only ``user_id``'s jobs unless None)."""
        found = {
            job.job_id
            for job in self.values()
            if job.job_id.startswith(prefix) and (user_id is None or job.user_id == user_id)
        }
        if self.rows is not None:
            found.update(self.rows.ids_with_prefix(prefix, user_id, cap))
        return sorted(found)[:cap]

    def finished_since(self, dirty: Sequence[str], since_us: int) -> list[JobState]:
        """Jobs finished at or after ``since_us``, in completion order."""
        overlay = self.overlay(dirty)
        jobs = [j for j in overlay.values() if j.status in TERMINAL and (j.completed_at or 0) >= since_us]
        if self.rows is not None:
            jobs.extend(self.rows.scan("completed_at >= ?", (since_us,), "completed_at", overlay.__contains__))
        jobs.sort(key=lambda j: (j.completed_at or 0, j.job_id))
        return jobs

    # --- writes (the folding thread) ----------------------------------------------------------

    def put(self, job: JobState) -> None:
        if job.status in TERMINAL:
            self.finished[job.job_id] = job
            self.active.pop(job.job_id, None)
        else:
            self.active[job.job_id] = job

    def __setitem__(self, job_id: str, job: JobState) -> None:
        assert job_id == job.job_id
        self.put(job)

    def flushed(self, written: frozenset[str]) -> list[str]:
        """``written`` rows are being written in the open transaction, so the previous flush has
        committed: the oldest finished jobs beyond ``cached`` that are not being written leave
        memory. Returns their ids."""
        self.flushing = written
        evicted: list[str] = []
        if self.rows is None or self.rows.horizon is not None:  # past views: their tail's jobs stay
            return evicted
        while len(self.finished) > self.cached:
            oldest = next(iter(self.finished))
            if oldest in written:
                break  # finished in this very batch: it goes at a later flush
            del self.finished[oldest]
            evicted.append(oldest)
        return evicted
