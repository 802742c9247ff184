"""Consistent copies of a live ledger: SQLite's online backup of the file and the blobs its events name.

A plain ``cp`` of a running ledger copies a main file whose newest pages sit in the ``-wal`` beside it,
so the copy silently lacks acknowledged events. The online backup reads one snapshot of the database
(WAL included) under a read lock that never blocks the server's writer, and the copy is made a single
self-contained file. Blobs are content-addressed, so copying them is idempotent, and every blob an
event of the copy names already existed when that event committed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import apsw

from ledger.domain.errors import StoreError
from ledger.store.schema import connect

LEDGER_NAME = "gpuledger.db"
BLOBS_NAME = "blobs"
_DIGEST = re.compile(rb'"digest":"([0-9a-f]{64})"')


@dataclass(frozen=True, slots=True)
class Head:
    """The last event of a ledger: what a backup or a restore reports, and what an admin compares."""

    position: int
    recorded_at: int | None
    hash: str


def head_of(conn: apsw.Connection) -> Head:
    row = conn.execute("SELECT position, recorded_at, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
    if row is None:
        return Head(position=0, recorded_at=None, hash="")
    return Head(position=row[0], recorded_at=row[1], hash=bytes(row[2]).hex())


def copy_ledger(source: Path, dest: Path) -> None:
    """One consistent snapshot of ``source`` (a running server's ledger too) into the new file ``dest``."""
    if dest.exists():
        raise StoreError(f"{dest} already exists: a backup never writes over a file")
    src = connect(source, readonly=True)
    try:
        copy = apsw.Connection(str(dest))
        try:
            with copy.backup("main", src, "main") as backup:
                backup.step(-1)  # every page in one step: one read snapshot, never a mix of two
            copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file: one file to keep
        finally:
            copy.close()
    except apsw.Error as e:
        raise StoreError(f"cannot back up {source}: {e}") from e
    finally:
        src.close()


def referenced_blobs(conn: apsw.Connection) -> set[str]:
    """Every blob digest an event names (code, outputs, results), read from the payloads' JSON."""
    found: set[str] = set()
    # instr, not LIKE: the payload column is a BLOB, and LIKE never matches a BLOB's bytes.
    sql = """SELECT payload FROM events WHERE instr(payload, CAST('"digest":"' AS BLOB)) > 0"""
    for (payload,) in conn.execute(sql):
        found.update(m.decode("ascii") for m in _DIGEST.findall(bytes(payload)))
    return found


def blob_path(root: Path, digest: str) -> Path:
    return root / digest[:2] / digest


def copy_blobs(digests: set[str], source_root: Path, dest_root: Path) -> tuple[int, list[str]]:
    """Copy the named blobs (fsynced); (bytes copied, digests missing at the source)."""
    copied, missing = 0, []
    for digest in sorted(digests):
        src, dst = blob_path(source_root, digest), blob_path(dest_root, digest)
        if not src.is_file():
            missing.append(digest)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        with dst.open("rb") as handle:
            os.fsync(handle.fileno())
        copied += dst.stat().st_size
    return copied, missing


def damaged_blobs(digests: set[str], root: Path) -> list[str]:
    """The named blobs that are absent under ``root`` or whose bytes no longer hash to their name."""
    bad = []
    for digest in sorted(digests):
        path = blob_path(root, digest)
        try:
            with path.open("rb") as handle:
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:
            actual = ""
        if actual != digest:
            bad.append(digest)
    return bad
