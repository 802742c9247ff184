"""Damage found before anything is written over it: the log's recent tail re-hashed at start, and the
head the server last saw committed (``<ledger>.head``) held against the file.

SQLite drops a truncated or bit-flipped WAL's later frames without a word, so a ledger can come back
shorter than what its server acknowledged; only a record kept beside it tells. The server writes
that record from what is durable (read back from the file, never its own memory), about once a
second and at stop, so a loss older than that is always seen.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from ledger.domain.errors import StoreError
from ledger.store.schema import code_version, connect
from ledger.store.store import GENESIS, ROW_COLUMNS, chain_hash

TAIL_CHECKED = 10_000  # events re-hashed at each start: milliseconds, whatever the ledger's length
FIX = (
    "restore it (`gpuledger restore BACKUP`, or `gpuledger restore --from-replica`); to accept the loss and "
    "start on this file as it is, delete {mark}"
)


@dataclass(frozen=True, slots=True)
class HeadMark:
    position: int
    hash: str


def mark_path(ledger: str | Path) -> Path:
    return Path(f"{ledger}.head")


def read_mark(ledger: str | Path) -> HeadMark | None:
    try:
        data = json.loads(mark_path(ledger).read_text())
        return HeadMark(position=int(data["position"]), hash=str(data["hash"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable mark proves nothing either way


def write_mark(ledger: str | Path, mark: HeadMark) -> None:
    """Atomically (tmp + rename): a reader sees the old record or the new one."""
    target = mark_path(ledger)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"position": mark.position, "hash": mark.hash}) + "\n")
    os.replace(tmp, target)


def durable_head(conn: apsw.Connection) -> HeadMark:
    row = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
    return HeadMark(0, "") if row is None else HeadMark(row[0], bytes(row[1]).hex())


def link_problem(row: tuple[Any, ...], expected_position: int, prev: bytes) -> str | None:
    """What breaks the chain at one stored event row (its place, its link, its hash), or None."""
    position, stream, version, type_, payload, recorded_at, actor, key, prev_hash, digest = row
    if position != expected_position:
        return f"expected position {expected_position}, found {position} (a row is missing)"
    if bytes(prev_hash) != prev:
        return "prev_hash does not match the hash of the previous event"
    body = payload.encode() if isinstance(payload, str) else bytes(payload)  # a tampered row may hold text
    if bytes(digest) != chain_hash(prev, position, stream, version, type_, recorded_at, actor, key, body):
        return "hash does not match the event's contents (the row was altered)"
    return None


def tail_problem(conn: apsw.Connection, tail: int = TAIL_CHECKED) -> str | None:
    """The first break in the last ``tail`` events' chain, naming its position, or None."""
    first = max(1, durable_head(conn).position - tail + 1)
    prev = GENESIS
    if first > 1:
        row = conn.execute("SELECT hash FROM events WHERE position = ?", (first - 1,)).fetchone()
        if row is None:
            return f"position {first - 1} is missing"
        prev = bytes(row[0])
    expected = first
    for row in conn.execute(f"SELECT {ROW_COLUMNS} FROM events WHERE position >= ? ORDER BY position", (first,)):
        wrong = link_problem(row, expected, prev)
        if wrong is not None:
            return f"position {expected}: {wrong}"
        prev, expected = bytes(row[9]), expected + 1
    return None


def mark_problem(conn: apsw.Connection, mark: HeadMark | None) -> str | None:
    """The file against the head its server last recorded: shorter, or different at that position."""
    if mark is None or mark.position == 0:
        return None
    head = durable_head(conn).position
    if head < mark.position:
        return (
            f"the ledger ends at position {head} but its server had committed up to {mark.position}: positions "
            f"{head + 1}..{mark.position} are lost (a truncated or damaged -wal, or an old copy)"
        )
    row = conn.execute("SELECT hash FROM events WHERE position = ?", (mark.position,)).fetchone()
    if row is None or bytes(row[0]).hex() != mark.hash:
        return f"position {mark.position} differs from what its server committed there"
    return None


def damage(ledger: str | Path, conn: apsw.Connection) -> str | None:
    """Everything the start-up check finds, as one line naming the first bad position and the fix."""
    try:
        found = tail_problem(conn) or mark_problem(conn, read_mark(ledger))
    except apsw.Error as e:
        found = f"the file is damaged ({type(e).__name__}: {e})"
    if found is None:
        return None
    return f"ledger {ledger}: {found}; " + FIX.format(mark=mark_path(ledger))


def check_file(ledger: str | Path) -> str | None:
    """The start-up check of an existing ledger file, read-only; None for a sound (or new) one."""
    if not Path(ledger).exists():
        return None
    try:
        conn = connect(ledger, readonly=True)
    except StoreError as e:
        return f"ledger {ledger}: the file cannot be opened ({e}); " + FIX.format(mark=mark_path(ledger))
    try:
        version = conn.pragma("user_version")
        if version > code_version():
            return None  # a newer gpuledger's ledger: opening it refuses that, in its own words
        if version == 0:  # no schema: new, or everything it held is gone
            mark = read_mark(ledger)
            if mark is None or mark.position == 0:
                return None
            lost = f"it holds no schema, but its server had committed up to {mark.position}: every event is lost"
            return f"ledger {ledger}: {lost}; " + FIX.format(mark=mark_path(ledger))
        return damage(ledger, conn)
    except apsw.Error as e:
        return f"ledger {ledger}: the file is damaged ({type(e).__name__}: {e}); " + FIX.format(mark=mark_path(ledger))
    finally:
        conn.close()


def record_head(ledger: str | Path, conn: apsw.Connection, last: HeadMark | None) -> HeadMark:
    """Write the durable head to the mark when it moved; the head read (and written) either way."""
    mark = durable_head(conn)
    if mark != last:
        write_mark(ledger, mark)
    return mark
