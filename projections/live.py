"""The ledger opened with the views folded in step: what the server, the CLI and the tools open.

The store and the writer know the views only through ``ledger.store.state``; this is where they are joined.
"""

from __future__ import annotations

from pathlib import Path

from ledger.store.disk import DiskReserve
from ledger.store.store import EventStore
from ledger.store.writer import Ledger
from projections.tables import VIEW_TABLES, ViewTables
from projections.views import Views


def open_store(
    path: str | Path, *, projection_interval_s: float = 0.0, finished_cached: int = VIEW_TABLES.finished_cached
) -> EventStore[Views]:
    """A synchronous store on ``path`` (one-shot commands: tokens, tests, benchmarks)."""
    tables = (
        VIEW_TABLES if finished_cached == VIEW_TABLES.finished_cached else ViewTables(finished_cached=finished_cached)
    )
    return EventStore(path, tables, projection_interval_s=projection_interval_s)


def open_ledger(
    path: str | Path,
    *,
    watch_interval: float = 0.25,
    projection_interval_s: float = 1.0,
    snapshot_every: int = VIEW_TABLES.snapshot_every,
    finished_cached: int = VIEW_TABLES.finished_cached,
    reserve: DiskReserve | None = None,
) -> Ledger[Views]:
    """The server's ledger: group-commit writer, notifications, views folded as events commit."""
    return Ledger(
        path,
        ViewTables(snapshot_every, finished_cached, backfill=True),
        watch_interval=watch_interval,
        projection_interval_s=projection_interval_s,
        reserve=reserve,
    )
