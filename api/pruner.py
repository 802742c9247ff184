"""The server's own retention: with RETENTION_DAYS > 0, ``gpuledger prune`` once an hour, in the server.

The same plan, events and unlinks as the CLI (``ledger.store.pruning``): the reads and the file removals in
a worker thread, the events through the server's writer. A failed round is logged and tried next hour.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import apsw
import structlog

from ledger.domain.clock import now_us
from ledger.domain.errors import LedgerError
from ledger.domain.events import JobPruned
from ledger.store.pruning import leftover, plan, remove_blobs
from ledger.store.retention import DAY_US, prune_write
from ledger.store.schema import connect
from ledger.store.writer import Ledger
from projections.views import Views

log = structlog.get_logger()
ACTOR = "retention"
EVERY_S = 3600.0
FIRST_AFTER_S = 5.0  # soon after a start (a server restarted daily still prunes), not in its busiest seconds
BATCH = 500


@dataclass(frozen=True, slots=True)
class Retention:
    """What a round needs of the server: its ledger, the ledger's file, the blob store, RETENTION_DAYS."""

    ledger: Ledger[Views]
    database_path: str
    blobs_root: Path
    days: int


async def prune_hourly(retention: Retention) -> None:
    await asyncio.sleep(FIRST_AFTER_S)
    while True:
        try:
            await prune_once(retention)
        except (LedgerError, OSError, apsw.Error) as e:
            log.warning("retention.failed", error=str(e))
        await asyncio.sleep(EVERY_S)


async def prune_once(retention: Retention) -> int:
    """One round: the events committed first, then the files no job names any more; how many jobs."""
    days = retention.days
    cutoff_us, reason = now_us() - days * DAY_US, f"older than {days} days, per RETENTION_DAYS"
    events = await asyncio.to_thread(_plan, retention, cutoff_us, reason)
    for start in range(0, len(events), BATCH):
        await retention.ledger.write(prune_write(events[start : start + BATCH], by=ACTOR))
    if events:
        removed, freed = await asyncio.to_thread(_remove, retention, events)
        log.info("retention.pruned", jobs=len(events), blobs=removed, bytes_freed=freed, reason=reason)
    return len(events)


def _plan(retention: Retention, cutoff_us: int, reason: str) -> list[JobPruned]:
    conn = connect(retention.database_path, readonly=True)
    try:
        return plan(conn, retention.ledger.views.jobs, cutoff_us, reason=reason, by=ACTOR)
    finally:
        conn.close()


def _remove(retention: Retention, events: list[JobPruned]) -> tuple[int, int]:
    conn = connect(retention.database_path, readonly=True)
    try:
        doomed = leftover(conn, events)
    finally:
        conn.close()
    return remove_blobs(retention.blobs_root, doomed)
