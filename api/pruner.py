"""The server's own retention: with RETENTION_DAYS > 0, ``gpuledger prune`` once an hour, in the server;
with ARTIFACT_RETENTION > 0 the same round removes the artifacts of jobs that ended longer ago than that.

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
from ledger.domain.events import JobArtifactsPruned, JobPruned
from ledger.store.pruning import artifact_plan, leftover, plan, remove_blobs
from ledger.store.retention import DAY_US, artifact_prune_write, prune_write
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
    artifact_retention_s: float = 0.0  # ARTIFACT_RETENTION (0: artifacts kept)


async def prune_hourly(retention: Retention) -> None:
    await asyncio.sleep(FIRST_AFTER_S)
    while True:
        try:
            await prune_once(retention)
        except (LedgerError, OSError, apsw.Error) as e:
            log.warning("retention.failed", error=str(e))
        await asyncio.sleep(EVERY_S)


async def prune_once(retention: Retention) -> int:
    """One round (outputs, then artifacts): the events committed first, then the files no job names any
    more; how many jobs lost either."""
    pruned = await _prune_outputs(retention) if retention.days > 0 else 0
    if retention.artifact_retention_s > 0:
        pruned += await prune_artifacts(retention)
    return pruned


async def prune_artifacts(retention: Retention) -> int:
    cutoff_us = now_us() - int(retention.artifact_retention_s * 1_000_000)
    reason = f"ended more than {retention.artifact_retention_s:g} s ago, per ARTIFACT_RETENTION"
    events = await asyncio.to_thread(_plan_artifacts, retention, cutoff_us, reason)
    for start in range(0, len(events), BATCH):
        await retention.ledger.write(artifact_prune_write(events[start : start + BATCH], by=ACTOR))
    if events:
        removed, freed = await asyncio.to_thread(_remove, retention, events)
        log.info("retention.artifacts_pruned", jobs=len(events), blobs=removed, bytes_freed=freed, reason=reason)
    return len(events)


async def _prune_outputs(retention: Retention) -> int:
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


def _plan_artifacts(retention: Retention, cutoff_us: int, reason: str) -> list[JobArtifactsPruned]:
    conn = connect(retention.database_path, readonly=True)
    try:
        return artifact_plan(conn, retention.ledger.views.jobs, cutoff_us, reason=reason, by=ACTOR)
    finally:
        conn.close()


def _remove(retention: Retention, events: list[JobPruned] | list[JobArtifactsPruned]) -> tuple[int, int]:
    conn = connect(retention.database_path, readonly=True)
    try:
        doomed = leftover(conn, events)
    finally:
        conn.close()
    return remove_blobs(retention.blobs_root, doomed)
