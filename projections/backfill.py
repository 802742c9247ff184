"""Rows of finished jobs rebuilt in the background, after a start that found the projection tables missing.

Such a start (no checkpoint, but a snapshot) becomes ready from the latest snapshot and the log after
it: that is the whole hot state (active jobs, users, nodes, tokens, tallies), written to the tables
with the checkpoint at once. What is still missing are the rows of jobs that had finished by the
snapshot; ``run`` writes them in a worker thread, one job's stream at a time (the log read in stream
order by its ``(stream, version)`` index, so memory stays flat), in short transactions so that the
writer never waits long for the lock. A marker row (``job_table.BACKFILL``, the snapshot's position)
says the rows are incomplete: meanwhile a point read of such a job folds its own stream, lists of
jobs may lack old finished ones, and ``audit verify`` reports the rebuild as unfinished. A crash half
way resumes at the next start: rows are only inserted where none is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import structlog

from ledger.domain.events import JobEvent, decode_event
from ledger.domain.jobs import TERMINAL, JobState, evolve_job
from ledger.store.schema import connect
from projections.job_table import BACKFILL, backfill_until
from projections.tables import job_row

log = structlog.get_logger()
CHUNK = 2000  # rows per transaction: the writer waits at most for one such insert


def run(path: str | Path, stop: threading.Event) -> None:
    """Write every missing finished job's row up to the marker, then drop the marker (unless ``stop``
    was set first: the next start resumes)."""
    writer = connect(path)
    reader = connect(path, readonly=True)
    try:
        until = backfill_until(writer)
        if until is None:
            return
        log.info("projections.backfill_started", until=until)
        written = _fill(reader, writer, until, stop)
        if stop.is_set():
            log.info("projections.backfill_stopped", rows=written)
            return
        with writer:
            writer.execute("DELETE FROM projection_checkpoints WHERE name = ?", (BACKFILL,))
        log.info("projections.backfill_done", rows=written)
    finally:
        reader.close()
        writer.close()


def _fill(reader: apsw.Connection, writer: apsw.Connection, until: int, stop: threading.Event) -> int:
    rows: list[tuple[object, ...]] = []
    written = 0
    for job in finished_jobs(reader, until):
        rows.append(job_row(job))
        if len(rows) >= CHUNK:
            written += _insert(writer, rows)
            if stop.is_set():
                return written
    return written + _insert(writer, rows)


def finished_jobs(conn: apsw.Connection, until: int) -> Iterator[JobState]:
    """The jobs terminal at ``until``, one stream folded at a time (the log read in stream order)."""
    state: JobState | None = None
    stream = None
    # 'job-' < stream < 'job.' is every job stream ('.' follows '-'): a range of the stream index.
    for name, position, payload, recorded_at in conn.execute(
        "SELECT stream, position, payload, recorded_at FROM events"
        " WHERE stream > 'job-' AND stream < 'job.' AND position <= ? ORDER BY stream, version",
        (until,),
    ):
        if name != stream:
            if state is not None and state.status in TERMINAL:
                yield state
            state, stream = None, name
        event = decode_event(payload)
        assert isinstance(event, JobEvent)
        state = evolve_job(state, event, position=position, at=recorded_at)
    if state is not None and state.status in TERMINAL:
        yield state


def _insert(conn: apsw.Connection, rows: list[tuple[object, ...]]) -> int:
    count = len(rows)
    if rows:
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO proj_jobs (job_id, user_id, status, position, completed_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        rows.clear()
    return count
