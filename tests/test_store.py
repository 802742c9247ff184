"""The APSW event store and the async ledger against a real temporary file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import pytest

from ledger.domain.errors import ConcurrencyConflict, IdempotencyConflict, InvalidTransition
from ledger.domain.events import Blob, JobQueued, JobScanned, JobSubmitted, NodeDrained, NodeRegistered, stream_of
from ledger.store.store import GENESIS, Committed, EventStore, Write, chain_hash, read_after, read_stream
from projections import tables
from projections.live import open_ledger, open_store


def submitted(job_id: str, user_id: str = "alice") -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id,
        user_id=user_id,
        competition_id="c",
        project_id="p",
        expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )


def node(name: str = "gpu-node-0") -> NodeRegistered:
    return NodeRegistered(name=name, host="h")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def store(db: Path):
    s = open_store(db)
    yield s
    s.close()


def count(store: EventStore) -> int:
    return store.conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_append_and_read_round_trip(store: EventStore) -> None:
    """Appended events come back with their positions, stream versions, actor and equal payloads."""
    first = store.append("job-a", 0, [submitted("a"), JobScanned(job_id="a", verdict="approved")], actor="tok1")
    second = store.append("node-gpu-node-0", 0, [node()])
    assert [r.position for r in first.records + second.records] == [1, 2, 3]
    read = read_after(store.conn, 0)
    assert [(r.stream, r.version, r.actor) for r in read] == [
        ("job-a", 1, "tok1"),
        ("job-a", 2, "tok1"),
        ("node-gpu-node-0", 1, "system"),
    ]
    assert [r.event for r in read_stream(store.conn, "job-a")] == [
        submitted("a"),
        JobScanned(job_id="a", verdict="approved"),
    ]
    assert store.head == 3


def test_expected_version_mismatch_writes_nothing(store: EventStore) -> None:
    """A stale expected version raises ConcurrencyConflict and leaves the log and views untouched."""
    store.append("job-a", 0, [submitted("a")])
    with pytest.raises(ConcurrencyConflict, match="at version 1, expected 0"):
        store.append("job-a", 0, [JobScanned(job_id="a", verdict="approved")])
    assert count(store) == 1
    assert store.views.jobs["a"].version == 1


def test_several_streams_in_one_write_are_atomic(store: EventStore) -> None:
    """One write spanning streams commits all of its events or none of them."""

    def both(_views: object) -> list[object]:
        return [submitted("a"), submitted("b"), node()]

    [done] = store.execute([Write(decide=both, expected={"job-a": 0, "job-b": 0})])  # type: ignore[arg-type]
    assert isinstance(done, Committed)
    assert (done.first_position, done.last_position) == (1, 3)
    [refused] = store.execute([Write(decide=both, expected={"job-a": 0})])  # type: ignore[arg-type]
    assert isinstance(refused, ConcurrencyConflict)
    assert count(store) == 3


def test_idempotent_replay_and_conflict(store: EventStore) -> None:
    """Same key and fingerprint returns the original positions; another fingerprint is a conflict."""
    write = Write(decide=lambda _v: [submitted("a")], idempotency_key="k1", fingerprint=b"f1")
    [original] = store.execute([write])
    [again] = store.execute([write])
    assert isinstance(original, Committed)
    assert isinstance(again, Committed)
    assert again.replayed
    assert (again.first_position, again.last_position) == (original.first_position, original.last_position)
    assert again.records == original.records
    other = Write(decide=lambda _v: [submitted("b")], idempotency_key="k1", fingerprint=b"f2")
    [conflict] = store.execute([other])
    assert isinstance(conflict, IdempotencyConflict)
    assert count(store) == 1


def test_idempotent_replay_within_one_batch(store: EventStore) -> None:
    """A retry queued in the same transaction as the original gets the original's events back."""
    write = Write(
        decide=lambda _v: [submitted("a"), JobScanned(job_id="a", verdict="approved")],
        idempotency_key="k1",
        fingerprint=b"f1",
    )
    original, again = store.execute([write, write])
    assert isinstance(original, Committed)
    assert isinstance(again, Committed)
    assert again.replayed
    assert [r.event for r in again.records] == [r.event for r in original.records]
    assert count(store) == 2


def test_domain_error_fails_only_its_write(store: EventStore) -> None:
    """A decide step that raises a DomainError fails alone; the other writes of the batch commit."""

    def refuse(_views: object) -> list[object]:
        raise InvalidTransition("no")

    results = store.execute(
        [
            Write(decide=lambda _v: [submitted("a")]),
            Write(decide=refuse),  # type: ignore[arg-type]
            Write(decide=lambda _v: [submitted("b")]),
        ]
    )
    assert [type(r) for r in results] == [Committed, InvalidTransition, Committed]
    assert sorted(store.views.jobs) == ["a", "b"]
    assert count(store) == 2


def test_writer_accounts_only_committed_events(store: EventStore) -> None:
    """``appended`` counts rows that committed, not a rolled-back batch's; each phase has its time."""

    def explode(_views: object) -> list[object]:
        raise RuntimeError("not a domain error: the whole transaction rolls back")

    store.execute([Write(decide=lambda _v: [submitted("a"), JobScanned(job_id="a", verdict="approved")])])
    assert store.appended == 2
    with pytest.raises(RuntimeError):
        store.execute([Write(decide=lambda _v: [submitted("b")]), Write(decide=explode)])  # type: ignore[arg-type]
    assert store.appended == 2
    assert count(store) == 2
    assert set(store.spent) == {"decide", "insert", "projections", "commit"}
    assert all(seconds > 0 for seconds in store.spent.values())


def test_hash_chain_links_rows(store: EventStore) -> None:
    """Each row's prev_hash is the previous row's hash, and its hash covers its own contents."""
    for job_id in "abc":
        store.append(f"job-{job_id}", 0, [submitted(job_id)])
    prev = GENESIS
    for row in store.conn.execute(
        "SELECT position, stream, version, type, recorded_at, actor, idempotency_key,"
        " payload, prev_hash, hash FROM events ORDER BY position"
    ):
        assert bytes(row[8]) == prev
        assert bytes(row[9]) == chain_hash(prev, *row[:7], bytes(row[7]))
        prev = bytes(row[9])
    assert store.head_hash == prev


@pytest.mark.parametrize("sql", ["UPDATE events SET actor = 'mallory'", "DELETE FROM events"])
def test_events_are_append_only(store: EventStore, sql: str) -> None:
    """The events table refuses UPDATE and DELETE."""
    store.append("job-a", 0, [submitted("a")])
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        store.conn.execute(sql)
    assert count(store) == 1


def test_views_survive_reopen(db: Path) -> None:
    """Reopening loads the views from their tables and catches up with events written after them."""
    store = open_store(db)
    store.append("job-a", 0, [submitted("a"), JobScanned(job_id="a", verdict="approved"), JobQueued(job_id="a")])
    store.append("node-n", 0, [node("n"), NodeDrained(name="n", by="admin")])
    live = store.views
    store.close()
    reopened = open_store(db)
    assert list(tables.view_rows(reopened.views)) == list(tables.view_rows(live))
    assert (reopened.views.position, reopened.views.recorded_at) == (live.position, live.recorded_at)
    assert (reopened.head, reopened.head_hash) == (store.head, store.head_hash)
    assert reopened.views.stream_versions == live.stream_versions
    assert list(reopened.published.queued) == ["a"]
    # An event with no projection write behind it (as if appended by an older build) is caught up on open.
    with reopened.conn:
        reopened.conn.execute("UPDATE projection_checkpoints SET position = 3")
    reopened.close()
    again = open_store(db)
    assert again.views.nodes["n"].drained
    assert again.views.position == 5
    again.close()


def test_refresh_sees_another_store(db: Path, store: EventStore) -> None:
    """Appends through a second connection are folded in by refresh()."""
    other = open_store(db)
    other.append("job-x", 0, [submitted("x")])
    other.close()
    assert "x" not in store.views.jobs
    assert store.refresh()
    assert store.views.jobs["x"].user_id == "alice"
    assert not store.refresh()


async def test_ledger_notices_another_process(db: Path) -> None:
    """A running Ledger notices an append by another process within about a second (data_version)."""
    ledger = open_ledger(db, watch_interval=0.1)
    await ledger.start()
    try:
        code = (
            "import sys; from ledger.domain.events import *; from projections.live import open_store;"
            "open_store(sys.argv[1]).append('job-p', 0, [JobSubmitted(job_id='p', user_id='bob',"
            " competition_id='c', project_id='p', expected_time_s=1, code=Blob(digest='0', size=1))])"
        )
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, str(db)], check=True)
        began = time.monotonic()
        assert await ledger.wait_beyond(0, timeout=3) == 1
        assert time.monotonic() - began < 1.0
        assert "p" in ledger.views.jobs
    finally:
        await ledger.close()


async def test_wait_beyond_wakes_on_commit(db: Path) -> None:
    """A waiter is woken by an in-process commit, long before its timeout."""
    ledger = open_ledger(db, watch_interval=60)  # the watcher cannot be what wakes it
    await ledger.start()
    try:
        waiter = asyncio.create_task(ledger.wait_beyond(0, timeout=10))
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await ledger.append("job-a", 0, [submitted("a")])
        assert await waiter == 1
        assert time.monotonic() - began < 0.5
    finally:
        await ledger.close()


async def test_wait_beyond_hears_only_committed_positions(db: Path) -> None:
    """While a batch is still inside its transaction, waiters do not see its positions."""
    ledger = open_ledger(db)
    await ledger.start()
    gate_one, gate_two = threading.Event(), threading.Event()

    def blocked(gate: threading.Event, job_id: str):
        return lambda _views: [submitted(job_id)] if gate.wait(5) else []

    try:
        first = asyncio.create_task(ledger.write(Write(decide=blocked(gate_one, "a"))))
        await asyncio.sleep(0.05)  # the writer is now inside batch 1
        second = asyncio.create_task(ledger.append("job-b", 0, [submitted("b")]))
        third = asyncio.create_task(ledger.write(Write(decide=blocked(gate_two, "c"))))
        await asyncio.sleep(0.05)
        gate_one.set()
        await first  # batch 2 now holds b (inserted) and c (blocked before its insert)
        assert await ledger.wait_beyond(1, timeout=0.3) == 1
        gate_two.set()
        await asyncio.gather(second, third)
        assert await ledger.wait_beyond(1, timeout=1) == 3
    finally:
        gate_one.set()
        gate_two.set()
        await ledger.close()


async def test_concurrent_appends_are_group_committed(db: Path) -> None:
    """64 concurrent appends all succeed in fewer transactions than appends."""
    ledger = open_ledger(db)
    await ledger.start()
    try:
        results = await asyncio.gather(*(ledger.append(f"job-{i}", 0, [submitted(str(i))]) for i in range(64)))
        assert sorted(r.first_position for r in results) == list(range(1, 65))
        assert 1 <= ledger.batches < 64
    finally:
        await ledger.close()
    reopened = open_store(db)
    assert len(reopened.views.jobs) == 64
    reopened.close()


async def test_answered_callers_share_the_next_batch(db: Path) -> None:
    """Callers answered together write again together: with the server's short GIL switch interval
    the writer, woken by the first of their next writes, still waits for the rest of them."""
    ledger = open_ledger(db)
    await ledger.start()
    default_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    rounds = 20

    async def appender(index: int) -> None:
        for round_ in range(rounds):
            event = node(f"n{index}-{round_}")
            await ledger.append(stream_of(event), 0, [event])

    try:
        await asyncio.gather(*(appender(i) for i in range(64)))
        # Without the wait each round splits into several small batches (40 batches for 20 rounds, measured).
        assert ledger.batches <= rounds * 1.5
    finally:
        sys.setswitchinterval(default_interval)
        await ledger.close()
    reopened = open_store(db)
    assert len(reopened.views.nodes) == 64 * rounds
    reopened.close()
