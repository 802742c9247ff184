"""Replaying the log: verify the hash chain, rebuild the views from position 0, views as of a point."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apsw
import msgspec

from ledger.domain.events import Recorded, event_tag
from ledger.store.integrity import link_problem
from ledger.store.store import GENESIS, ROW_COLUMNS, record_of
from projections import snapshots, tables
from projections.job_table import backfill_until
from projections.replay import REPLAY_COLUMNS, replay
from projections.views import Views


@dataclass(frozen=True)
class Problem:
    position: int | None
    what: str

    def __str__(self) -> str:
        where = f"position {self.position}" if self.position is not None else "projections"
        return f"{where}: {self.what}"


def _rows(conn: apsw.Connection, until: int | None = None) -> Iterator[tuple[Any, ...]]:
    sql = f"SELECT {ROW_COLUMNS} FROM events"
    if until is not None:
        yield from conn.execute(sql + " WHERE position <= ? ORDER BY position", (until,))
    else:
        yield from conn.execute(sql + " ORDER BY position")


def check_row(
    row: tuple[Any, ...], expected_position: int, prev: bytes, versions: dict[str, int]
) -> tuple[Recorded | None, str | None]:
    """Check one stored row against the chain; returns its record, or what is wrong with it."""
    wrong = link_problem(row, expected_position, prev)
    if wrong is not None:
        return None, wrong
    _position, stream, version, type_ = row[:4]
    if version != versions.get(stream, 0) + 1:
        return None, f"stream {stream} jumps to version {version}"
    try:
        record = record_of(row)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return None, f"payload does not decode: {e}"
    if event_tag(record.event) != type_:
        return None, f"type column {type_} differs from the payload's tag {event_tag(record.event)}"
    return record, None


def verify(conn: apsw.Connection) -> list[Problem]:
    """Everything wrong with the ledger, first problem first (empty when sound)."""
    conn.execute("BEGIN")  # one snapshot: log, tables and checkpoint as of the same instant
    try:
        return _verify(conn)
    finally:
        conn.execute("ROLLBACK")


def _verify(conn: apsw.Connection) -> list[Problem]:
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        return [Problem(None, f"integrity_check: {'; '.join(map(str, integrity[:5]))}")]
    # The projection tables may trail the log (a server writes them every second or so): they are
    # compared with a rebuild up to their own checkpoint; the chain is checked to the end.
    checkpoint = tables.checkpoint(conn)
    marks = dict(conn.execute("SELECT position, hash FROM snapshots"))
    views, prev, head = Views(), GENESIS, 0
    versions: dict[str, int] = {}
    for expected, row in enumerate(_rows(conn), start=1):
        record, error = check_row(row, expected, prev, versions)
        if record is None:
            return [Problem(expected, error or "invalid")]
        if record.position <= checkpoint:
            views.apply(record)
            if record.position in marks:
                wrong = check_snapshot(conn, views, bytes(row[9]), bytes(marks[record.position]))
                if wrong:
                    return [Problem(record.position, wrong)]
        prev, versions[record.stream], head = bytes(row[9]), record.version, record.position
    if checkpoint > head:
        return [Problem(None, f"checkpoint {checkpoint} is beyond the end of the log ({head})")]
    beyond = [position for position in marks if position > checkpoint]
    if beyond:
        return [Problem(min(beyond), "a snapshot lies beyond the projections' checkpoint")]
    pending = backfill_until(conn)
    if pending is not None:
        what = f"rows of jobs finished by position {pending} are still being rebuilt (a server writes them)"
        return [Problem(None, what)]
    return compare_projections(conn, views)


def check_snapshot(conn: apsw.Connection, views: Views, chain: bytes, stored_hash: bytes) -> str | None:
    """What is wrong with the snapshot at ``views.position`` (folded from 0 up to there), if anything."""
    if stored_hash != chain:
        return "snapshot hash differs from the chain's hash at its position"
    row = conn.execute("SELECT data FROM snapshots WHERE position = ?", (views.position,)).fetchone()
    if row is None or bytes(row[0]) != snapshots.hot_state(views):
        return "snapshot state differs from the fold at its position"
    return None


def compare_projections(conn: apsw.Connection, rebuilt: Views) -> list[Problem]:
    """The first difference between the stored projection rows and a rebuild from scratch."""
    stored_checkpoint = tables.checkpoint(conn)
    if stored_checkpoint != rebuilt.position:
        return [Problem(None, f"checkpoint is {stored_checkpoint}, the log ends at {rebuilt.position}")]
    live = tables.table_rows(conn)
    fresh = tables.view_rows(rebuilt)
    for stored, expected in zip(live, fresh, strict=False):
        if stored != expected:
            table, key = (stored[0], stored[1]) if stored[:2] <= expected[:2] else expected[:2]
            fields = differing_fields(stored, expected) if stored[:2] == expected[:2] else ""
            return [Problem(None, f"{table} row {key!r} differs from a rebuild{fields}")]
    leftover = next(live, None) or next(fresh, None)
    if leftover is not None:
        return [Problem(None, f"{leftover[0]} row {leftover[1]!r} is only on one side")]
    return []


def differing_fields(stored: tuple[str, str, bytes], expected: tuple[str, str, bytes]) -> str:
    """`` (fields: a, b)``: which top-level fields of one row's JSON differ, for the admin reading why."""
    try:
        old, new = msgspec.json.decode(stored[2]), msgspec.json.decode(expected[2])
    except msgspec.DecodeError:
        return " (stored row is not JSON)"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ""
    names = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    return f" (fields: {', '.join(names)})" if names else ""


def views_until(conn: apsw.Connection, *, position: int | None = None, time_us: int | None = None) -> Views:
    """The views as they stood at a ledger position or an instant (replayed from position 0)."""
    return replay(
        conn.execute(
            f"SELECT {REPLAY_COLUMNS} FROM events WHERE position <= ? AND recorded_at <= ? ORDER BY position",
            (position if position is not None else 2**62, time_us if time_us is not None else 2**62),
        )
    )


def rebuild(conn: apsw.Connection) -> Views:
    """Fold the whole log from position 0 and overwrite the projection tables, in one transaction."""
    views = views_until(conn)
    with conn:
        tables.replace_all(conn, views)
    return views
