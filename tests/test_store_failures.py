"""A write that fails leaves nothing behind: the store's head and views are what the file holds.

Failures are injected at each phase of a write (decide, insert, projections, commit) the way SQLite
fails on a full disk (it rolls the transaction back by itself, then answers SQLITE_FULL), and made
real on a small tmpfs holding the ledger.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from disks import fill

from ledger.domain.errors import LedgerUnavailable
from ledger.domain.events import Blob, JobSubmitted
from ledger.store import disk
from ledger.store.blobs import BlobStore
from ledger.store.disk import DiskReserve
from ledger.store.schema import connect
from ledger.store.store import EventStore, Write, max_position
from projections import audit, tables
from projections.live import open_ledger, open_store
from projections.tables import VIEW_TABLES
from projections.token_usage import TokenUsage, last_used

PHASES = {
    "decide": "SELECT fingerprint",  # the second write's idempotency look-up, after the first one folded
    "insert": "INSERT INTO events",
    "projections": "INSERT OR REPLACE INTO proj_",
    "commit": "COMMIT",
}


def submitted(job_id: str) -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id,
        user_id="alice",
        competition_id="c",
        project_id="p" * 200,  # a few hundred bytes a row: a small disk fills in a few hundred appends
        expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )


def submits(*job_ids: str) -> list[Write]:
    return [
        Write(decide=lambda _v, j=j: [submitted(j)], idempotency_key=f"k-{j}", fingerprint=j.encode()) for j in job_ids
    ]


class FullDisk:
    """An exec tracer failing every statement that starts with ``prefix`` as SQLite does on a full
    disk: the transaction rolled back by SQLite itself, then SQLITE_FULL."""

    def __init__(self, conn: apsw.Connection, prefix: str) -> None:
        self.conn, self.prefix, self.fired = conn, prefix, 0

    def __call__(self, _cursor: apsw.Cursor, sql: str, _bindings: object) -> bool:
        if sql.lstrip().startswith(self.prefix):
            self.fired += 1
            self.conn.execute("ROLLBACK")
            raise apsw.FullError("database or disk is full")
        return True


def assert_durable(store: EventStore) -> None:
    """The store's head, hash and views equal a rebuild from the file, and the audit passes."""
    conn = connect(store.path, readonly=True)
    try:
        rebuilt = audit.views_until(conn)
        assert store.head == max_position(conn) == rebuilt.position == store.views.position
        last = conn.execute("SELECT hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
        assert store.head_hash == (bytes(last[0]) if last else bytes(32))
        assert list(tables.view_rows(store.views)) == list(tables.view_rows(rebuilt))
        assert audit.verify(conn) == []
    finally:
        conn.close()


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A 4 MiB tmpfs (tests/disks.py)."""
    return tmpfs("4m")


def append_until_full(store: EventStore, prefix: str) -> int:
    """Append one submit at a time until the disk refuses one; how many went through."""
    for n in range(2000):
        try:
            store.execute(submits(f"{prefix}{n}"))
        except LedgerUnavailable:
            return n
    raise AssertionError("the disk never filled")


@pytest.mark.parametrize("phase", ["decide", "insert", "commit"])
def test_a_commit_refused_in_any_phase_leaves_only_what_is_durable(tmp_path: Path, phase: str) -> None:
    """SQLite rolling back by itself at decide, insert or commit: nothing refused stays in the views."""
    store = open_store(tmp_path / "ledger.db")
    store.execute(submits("a"))
    store.conn.exec_trace = FullDisk(store.conn, PHASES[phase])
    with pytest.raises(LedgerUnavailable, match="full"):
        store.execute(submits("b", "c"))
    store.conn.exec_trace = None
    assert "b" not in store.views.jobs
    assert "c" not in store.views.jobs
    assert_durable(store)
    assert not store.writable
    assert "full" in (store.last_error or "")
    store.execute(submits("b", "c"))  # the same writes, once the disk takes them
    assert store.writable
    assert "c" in store.views.jobs
    assert_durable(store)
    store.close()


def test_projection_rows_refused_by_a_full_disk_are_put_off_and_the_events_land(tmp_path: Path) -> None:
    """A full disk refusing the projection rows: the whole transaction is undone, then the events are
    written alone and the rows stay dirty for a later write; the audit passes throughout."""
    store = open_store(tmp_path / "ledger.db")
    store.execute(submits("a"))
    fault = FullDisk(store.conn, PHASES["projections"])
    store.conn.exec_trace = fault
    store.execute(submits("b", "c"))
    store.conn.exec_trace = None
    assert fault.fired == 1
    assert "c" in store.views.jobs
    assert store.projections_behind
    assert_durable(store)
    store.conn.exec_trace = fault
    store.execute(submits("d"))  # within the hold: no second try at the rows
    store.conn.exec_trace = None
    assert fault.fired == 1
    store.write_projections()  # forced, but the hold still stands
    assert store.projections_behind
    store._projections_held_until = 0.0  # the hold over
    store.write_projections()
    assert not store.projections_behind
    assert_durable(store)
    store.close()


def test_a_reload_that_fails_is_done_again_before_the_next_write(tmp_path: Path) -> None:
    """When even reading the file back fails after a refused commit, the next write reloads first:
    it never folds onto, or chains after, events that were rolled back."""
    store = open_store(tmp_path / "ledger.db")
    store.execute(submits("a"))
    refused = FullDisk(store.conn, "COMMIT")
    unreadable = {"fired": False}

    def trace(cursor: apsw.Cursor, sql: str, bindings: object) -> bool:
        if refused.fired and not unreadable["fired"] and "projection_checkpoints" in sql:
            unreadable["fired"] = True
            raise apsw.IOError("disk I/O error")
        return refused(cursor, sql, bindings) if not refused.fired else True

    store.conn.exec_trace = trace
    with pytest.raises(LedgerUnavailable, match="I/O"):
        store.execute(submits("b"))
    store.conn.exec_trace = None
    store.execute(submits("c"))
    assert "b" not in store.views.jobs
    assert "c" in store.views.jobs
    assert_durable(store)
    store.close()


def test_a_decide_step_that_raises_fails_its_whole_batch(tmp_path: Path) -> None:
    """A bug in one decide step fails the batch: the writes decided before it are not folded either."""
    store = open_store(tmp_path / "ledger.db")

    def broken(_views: object) -> list[JobSubmitted]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        store.execute([*submits("a"), Write(decide=broken)])
    assert "a" not in store.views.jobs
    assert store.head == 0
    assert store.writable  # a bug is not the disk
    assert_durable(store)
    store.close()


def test_a_full_filesystem_refuses_a_commit_and_the_store_recovers_without_reopening(small_disk: Path) -> None:
    """On a real full tmpfs the refused append is gone from the views; after room returns appends go on."""
    store = open_store(small_disk / "ledger.db")
    store.execute(submits("a"))
    filler = fill(small_disk)
    went = append_until_full(store, "full-")
    assert f"full-{went}" not in store.views.jobs
    assert_durable(store)
    assert not store.writable
    filler.unlink()
    store.execute(submits("after"))
    assert store.writable
    assert "after" in store.views.jobs
    assert_durable(store)
    store.close()


def test_the_reserve_takes_the_write_the_full_disk_refused(small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a reserve, an append on a full disk goes through (the reserve is released) and the reserve
    comes back once room returns."""
    monkeypatch.setattr(disk, "RESTORE_CHECK_S", 0.0)
    reserve = DiskReserve(small_disk / "ledger.db.reserve", 512 * 1024)
    assert reserve.ensure()
    store = EventStore(small_disk / "ledger.db", VIEW_TABLES, reserve=reserve)
    filler = fill(small_disk)
    store.execute(submits("while-full"))  # refused by the disk, then taken from the reserve
    assert not reserve.held
    assert store.writable
    assert "while-full" in store.views.jobs
    assert_durable(store)
    filler.unlink()
    store.execute(submits("after"))
    assert reserve.held
    store.close()


def test_a_reserve_of_another_size_is_made_anew(tmp_path: Path) -> None:
    """A changed LEDGER_RESERVE_BYTES replaces the old reserve; 0 gives it back; no folder is no error."""
    path = tmp_path / "ledger.db.reserve"
    assert DiskReserve(path, 2048).ensure()
    assert DiskReserve(path, 4096).ensure()
    assert path.stat().st_size == 4096
    assert not DiskReserve(path, 0).ensure()
    assert not path.exists()
    assert not DiskReserve(tmp_path / "missing" / "r", 4096).ensure()  # no folder: no reserve, no crash


@pytest.mark.parametrize("crash", [True, False])
def test_the_store_opens_on_a_full_disk_without_writing(small_disk: Path, crash: bool) -> None:
    """Rows the tail of the log changed are left dirty when the disk has no room: the open succeeds,
    after a crash (-wal and -shm left by a live connection) or a clean close (they are kept on purpose)."""
    db = small_disk / "ledger.db"
    store = open_store(db, projection_interval_s=3600.0)  # rows and checkpoint left behind the log
    store.execute(submits("a", "b"))
    other = connect(db) if crash else None
    store.close()
    filler = fill(small_disk)
    reopened = open_store(db)
    assert "b" in reopened.views.jobs
    assert reopened.projections_behind
    assert not reopened.writable
    filler.unlink()
    reopened.execute(submits("c"))
    assert reopened.writable
    assert_durable(reopened)
    reopened.close()
    if other is not None:
        other.close()


def test_every_caller_of_a_refused_batch_hears_the_error(small_disk: Path) -> None:
    """Group commit on a full disk: every waiter gets LedgerUnavailable, none a success, the head stays;
    once room returns the writer says it can write again by itself."""

    async def scenario() -> None:
        ledger = open_ledger(small_disk / "ledger.db")
        await ledger.start()
        try:
            for write in submits("a"):
                await ledger.write(write)
            head = ledger.head
            filler = fill(small_disk)
            outcomes = await asyncio.gather(
                *(ledger.write(w) for w in submits(*(f"x{n}" for n in range(300)))), return_exceptions=True
            )
            refused = [o for o in outcomes if isinstance(o, LedgerUnavailable)]
            assert refused, "the disk never filled"
            accepted = [o for o in outcomes if not isinstance(o, BaseException)]
            assert len(refused) + len(accepted) == 300
            assert ledger.head == head + len(accepted) == ledger.store.head
            assert not ledger.writable
            assert ledger.last_write_error
            assert_durable(ledger.store)
            filler.unlink()
            for _ in range(100):  # the idle writer tries again by itself
                if ledger.writable:
                    break
                await asyncio.sleep(0.1)
            assert ledger.writable
        finally:
            await ledger.close()

    asyncio.run(scenario())


def test_token_usage_kept_through_a_full_disk(small_disk: Path) -> None:
    """A flush the full disk refuses keeps its batch for the next one instead of ending the flushing."""
    db = small_disk / "ledger.db"
    open_store(db).close()
    usage = TokenUsage(db)
    usage.touch("t1")
    filler = fill(small_disk)
    asyncio.run(usage.flush())  # refused: no exception, nothing lost
    filler.unlink()
    asyncio.run(usage.flush())
    conn = connect(db, readonly=True)
    assert set(last_used(conn)) == {"t1"}
    conn.close()


def test_a_blob_the_full_disk_refuses_leaves_no_temporary_file(small_disk: Path) -> None:
    """A refused blob write says "not now" (LedgerUnavailable) and removes its .tmp-* file."""
    blobs = BlobStore(small_disk / "jobs")
    kept = blobs.put(b"before")
    filler = fill(small_disk)
    with pytest.raises(LedgerUnavailable, match="blob"):
        blobs.put(b"x" * 100_000)
    assert list(blobs.root.glob("*/.tmp-*")) == []
    filler.unlink()
    assert blobs.get(kept) == b"before"


def test_the_start_sweeps_stale_temporary_blob_files(tmp_path: Path) -> None:
    """Temporary files left by a crash are removed once stale; one being written now is left alone."""
    blobs = BlobStore(tmp_path)
    (blobs.root / "ab").mkdir()
    stale, fresh = blobs.root / "ab" / ".tmp-old", blobs.root / "ab" / ".tmp-new"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    os.utime(stale, (0, 0))
    assert blobs.sweep_temporary() == 1
    assert not stale.exists()
    assert fresh.exists()


def test_the_automatic_dispatch_floor_fits_a_small_disk(small_disk: Path) -> None:
    """Unset, the floor is 5 % of a small filesystem (not 128 MiB that would hold it for good); 0 is none."""
    assert disk.auto_floor(small_disk) == int(4 * 1024 * 1024 * 0.05)
    assert disk.dispatch_hold(small_disk, None) is None
    assert disk.dispatch_hold(small_disk, 0) is None
    hold = disk.dispatch_hold(small_disk, 8 * 1024 * 1024)
    assert hold is not None
    assert "DISK_FREE_FLOOR_BYTES" in hold
