"""Snapshots: as-of from the nearest snapshot equals a replay from position 0 at every point; audit verify
catches a snapshot whose hash or state was altered; old ledgers get snapshots written for them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import apsw
from hypothesis import HealthCheck, given, settings
from test_properties import NODES, batches, writes_of

from ledger.domain.events import NodeRegistered
from ledger.domain.nodes import decide_register
from ledger.store.store import EventStore, Write
from projections import snapshots
from projections.asof import hot_views_as_of_sync
from projections.audit import verify, views_until
from projections.tables import ViewTables
from projections.views import Views


def small_snapshots(path: Path, every: int = 3) -> EventStore[Views]:
    store = EventStore(path, ViewTables(snapshot_every=every))
    store.execute(
        [Write(decide=lambda v, n=n: decide_register(v.nodes.get(n), NodeRegistered(name=n, host="h"))) for n in NODES]
    )
    return store


def observed(views: Views) -> tuple[object, ...]:
    """What an as-of document reads: the hot state and the ten newest jobs."""
    newest = views.newest_jobs(user_id=None, status=None, limit=10)
    return snapshots.hot_state(views), newest, [j.job_id for j in views.queue()], views.node_jobs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_as_of_from_a_snapshot_equals_a_replay_from_zero(plan: list[list[tuple]]) -> None:  # type: ignore[type-arg]
    """At every position (and at the instant of every event) of a random ledger, snapshot plus tail gives
    the same hot state, newest jobs, queue and node occupancy as folding from position 0."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.db"
        store = small_snapshots(path)
        for batch in plan:
            store.execute(writes_of(batch))
        assert verify(store.conn) == []
        times = [row[0] for row in store.conn.execute("SELECT recorded_at FROM events ORDER BY position")]
        for position in range(store.head + 1):
            expected = observed(views_until(store.conn, position=position))
            assert observed(hot_views_as_of_sync(path, position=position, time_us=None)) == expected, position
        for time_us in sorted(set(times)):
            expected = observed(views_until(store.conn, time_us=time_us))
            assert observed(hot_views_as_of_sync(path, position=None, time_us=time_us)) == expected, time_us
        store.close()


def ledger_with_snapshots(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "ledger.db"
    store = small_snapshots(path, every=2)
    store.execute(writes_of([("advance", "j0", 6), ("advance", "j1", 3), ("advance", "j2", 2)]))
    position = snapshots.latest_position(store.conn)
    store.close()
    assert position > 0
    return path, position


def test_a_snapshot_with_altered_state_fails_verify(tmp_path: Path) -> None:
    """One byte of a snapshot's state changed: verify names its position and what differs."""
    path, position = ledger_with_snapshots(tmp_path)
    conn = apsw.Connection(str(path))
    data = bytes(conn.execute("SELECT data FROM snapshots WHERE position = ?", (position,)).fetchone()[0])
    conn.execute("UPDATE snapshots SET data = ? WHERE position = ?", (data.replace(b"1", b"2", 1), position))
    problems = verify(conn)
    wrong = "snapshot state differs from the fold at its position"
    assert [(p.position, p.what) for p in problems] == [(position, wrong)]


def test_a_snapshot_with_a_wrong_hash_fails_verify(tmp_path: Path) -> None:
    """A snapshot claiming another chain hash than the event at its position: verify fails there."""
    path, position = ledger_with_snapshots(tmp_path)
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE snapshots SET hash = ? WHERE position = ?", (bytes(32), position))
    problems = verify(conn)
    assert [(p.position, p.what) for p in problems] == [
        (position, "snapshot hash differs from the chain's hash at its position")
    ]


def test_missing_snapshots_are_written_for_an_old_ledger(tmp_path: Path) -> None:
    """A ledger written without snapshots gets one every N events; they verify and as-of uses them."""
    path = tmp_path / "ledger.db"
    store = small_snapshots(path, every=10**9)
    store.execute(writes_of([("advance", f"j{i}", 6) for i in range(4)]))
    assert snapshots.latest_position(store.conn) == 0
    assert snapshots.write_missing(store.conn, 4) == store.head // 4
    assert verify(store.conn) == []
    for position in range(store.head + 1):
        assert observed(hot_views_as_of_sync(path, position=position, time_us=None)) == observed(
            views_until(store.conn, position=position)
        )
    store.close()
