"""The views as they stood at a past position or instant, folded on a connection of their own.

A replay is CPU work proportional to the log up to that point: on the event loop it would stall every
other request, and on the shared reader connection it would hold its snapshot for the whole fold. The
server runs ``planned_as_of_sync`` in its as-of child processes (``api/asofpool.py``): in a thread, the
fold's Python would still take the GIL from the loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledger.domain.shares import Weights
from ledger.store.schema import connect
from ledger.store.store import max_position
from projections.audit import views_until
from projections.plan import Plan, make_plan
from projections.replay import gc_paused
from projections.snapshots import position_at, views_from_snapshot
from projections.views import Views


def views_as_of_sync(path: str | Path, *, position: int | None, time_us: int | None) -> Views:
    """The complete views at a point (every job, finished ones included), replayed from position 0."""
    conn = connect(Path(path), readonly=True)
    try:
        return views_until(conn, position=position, time_us=time_us)
    finally:
        conn.close()


def hot_views_as_of_sync(path: str | Path, *, position: int | None, time_us: int | None) -> Views:
    """The hot views at a point (active jobs, users, nodes, tokens, tallies, the newest jobs) from the
    nearest snapshot, or replayed from position 0 when no snapshot is that old; one read transaction,
    so log, snapshot and tables agree. What the dashboard document reads, in time bounded by
    SNAPSHOT_EVERY rather than by the ledger's length."""
    conn = connect(Path(path), readonly=True)
    try:
        with gc_paused():  # a collection here would scan the whole live heap while holding the GIL
            conn.execute("BEGIN")
            target = max_position(conn) if position is None else position
            if time_us is not None:
                target = min(target, position_at(conn, time_us))
            views = views_from_snapshot(conn, target)
            return views if views is not None else views_until(conn, position=target)
    finally:
        conn.close()


async def views_as_of(path: str | Path, *, position: int | None, time_us: int | None) -> Views:
    """``views_until`` off the event loop: the loop keeps answering while the fold runs."""
    return await asyncio.to_thread(views_as_of_sync, path, position=position, time_us=time_us)


def planned_as_of_sync(
    path: str | Path, *, position: int | None, time_us: int | None, weights: Weights | None = None
) -> tuple[Views, int, Plan]:
    """The views as of a point, the instant they stand for, and the queue plan then (all CPU work):
    the order and factors as they stood, scored at that instant from that point's accounts."""
    views = hot_views_as_of_sync(path, position=position, time_us=time_us)
    now = time_us if time_us is not None else views.recorded_at
    return views, now, make_plan(views, now, weights)
