"""Readers see committed state only, through snapshots that nothing changes after they are published."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from test_properties import NODES, batches, new_store, snapshot, writes_of

from ledger.domain.errors import LedgerUnavailable
from ledger.domain.events import NodeRegistered
from ledger.domain.nodes import decide_register
from ledger.store.store import Write
from ledger.store.writer import Ledger
from projections import tables
from projections.audit import views_until
from projections.live import open_ledger
from projections.views import Views


def held(views: Views) -> tuple[object, ...]:
    """What a reader observes from memory (row reads may show a committed later state of a job)."""
    return (
        list(tables.view_rows(views)),
        views.position,
        views.stream_versions,
        [j.job_id for j in views.queue()],
        list(views.active),
        {n: list(j) for n, j in views.node_jobs.items()},
        views.minutes,
        views.hours,
        views.day_tally(views.recorded_at),
        list(views.user_order),
        list(views.active_users),
        views.job_counts,
        views.ranked_users(0, 100),
    )


async def started(path: Path) -> Ledger[Views]:
    ledger = open_ledger(path, projection_interval_s=0.0)
    await ledger.start()
    for name in NODES:
        register = NodeRegistered(name=name, host="h")
        await ledger.write(Write(decide=lambda v, e=register: decide_register(v.nodes.get(e.name), e)))
    return ledger


async def test_a_reader_never_sees_an_event_whose_commit_failed(tmp_path: Path) -> None:
    """While a batch's commit is under way and then fails, a reader on another thread sees the old state only."""
    ledger = await started(tmp_path / "ledger.db")
    await ledger.write(writes_of([("advance", "j0", 1)])[0])
    seen: list[tuple[bool, int]] = []

    def read() -> None:
        views = ledger.views
        seen.append(("j1" in views.jobs, views.position))

    def fail_commit(_cursor: apsw.Cursor, sql: str, _bindings: object) -> bool:
        if sql.lstrip().startswith("COMMIT"):  # the batch is folded and inserted: a reader looks now
            reader = threading.Thread(target=read)
            reader.start()
            reader.join()
            ledger.store.conn.execute("ROLLBACK")
            raise apsw.FullError("database or disk is full")
        return True

    head = ledger.head
    ledger.store.conn.exec_trace = fail_commit
    with pytest.raises(LedgerUnavailable):
        await ledger.write(writes_of([("advance", "j1", 1)])[0])
    ledger.store.conn.exec_trace = None
    read()
    assert len(seen) >= 2  # the store tries a full disk's batch again: a reader looked at each try
    assert set(seen) == {(False, head)}
    await ledger.close()


async def test_a_snapshot_a_reader_holds_never_changes(tmp_path: Path) -> None:
    """A job's whole life committed after a reader took the views: what the reader holds stays as it was."""
    ledger = await started(tmp_path / "ledger.db")
    for write in writes_of([("advance", "j0", 3), ("advance", "j1", 6)]):
        await ledger.write(write)
    taken = ledger.views
    before = held(taken)
    for write in writes_of([("advance", "j0", 3), ("advance", "j2", 4), ("advance", "j3", 3)]):
        await ledger.write(write)
    assert held(taken) == before
    assert held(ledger.views) != before  # the new state is published to the next reader
    await ledger.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_each_published_snapshot_equals_a_replay_to_its_position(plan: list[list[Any]]) -> None:
    """Any command mix: every snapshot published stays equal to the log replayed up to its position."""
    with tempfile.TemporaryDirectory() as directory:
        store = new_store(directory)
        kept = []
        for batch in plan:
            store.execute(writes_of(batch))
            kept.append((store.published, held(store.published)))
        for published, then in kept:
            assert held(published) == then
            assert held(views_until(store.conn, position=published.position)) == then
        assert snapshot(store.published) == snapshot(views_until(store.conn))
        store.close()
