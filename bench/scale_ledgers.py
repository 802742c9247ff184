"""Ledgers for ``bench/scale.py``: N events of finished job lifecycles, or a long queue, built fast.

Rows go straight into the events table in the store's row format (hash chain included), then the
projection tables are rebuilt by opening the store (the fast replay) and snapshots are written every
SNAPSHOT_EVERY events. Each ledger is cached in the temp dir; a run works on a copy of it.

Every ledger has the server's local node registered and drained (so queued jobs stay queued) and an
admin token with a known secret.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
from appends import USERS, event_stream

from ledger.domain.clock import now_us
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobQueued,
    JobScanned,
    JobSubmitted,
    NodeDrained,
    NodeRegistered,
    encode_event,
    event_tag,
    stream_of,
)
from ledger.domain.tokens import mint
from ledger.store.schema import connect, migrate
from ledger.store.store import GENESIS, ROW_COLUMNS, chain_hash
from projections import snapshots
from projections.live import open_store

CACHE = Path(tempfile.gettempdir()) / "gpuledger-bench-scale"
VERSION = 5  # bump when the shape of the built ledgers changes
# Version 5 builds afresh: versions 1 to 4 were first migrated by an earlier draft of migration 0004
# (positions only), so they lacked the job search's indexes and timed filtered lists as full scans.
UPGRADES_FROM: int | None = None  # a version whose events are the same (its file is migrated, not rebuilt)
ADMIN_SECRET = "bench-scale-admin-secret-0123456789"
STEP_US = 200_000  # 0.2 s between events: a million events span about two days
SNAPSHOT_EVERY = 10_000
MAX_AGE_S = 20 * 86_400  # the admin token lives 30 days


def preamble() -> list[AnyEvent]:
    _, token = mint("admin", secret=ADMIN_SECRET, days=30, is_admin=True, by="bench")
    local = NodeRegistered(name="local", host="localhost", port=0, user="", slots=1, kind="local")
    return [local, NodeDrained(name="local", by="bench", reason="benchmark: nothing runs"), token]


def history(count: int) -> Iterator[AnyEvent]:
    """``count`` events: the preamble, then finished job lifecycles (a few interleaved)."""
    yield from itertools.islice(itertools.chain(preamble(), event_stream("s")), count)


def queue(pending: int) -> Iterator[AnyEvent]:
    """The preamble, eight nodes, then ``pending`` jobs submitted, scanned and queued (none can run)."""
    rng = random.Random(7)
    yield from preamble()
    yield from itertools.islice(event_stream("q"), 8)  # the node registrations
    for n in range(pending):
        job_id = f"{n:08d}-q"
        yield JobSubmitted(
            job_id=job_id,
            user_id=rng.choice(USERS),
            competition_id="spaceship-titanic",
            project_id=f"proj-{rng.randrange(50)}",
            expected_time_s=rng.choice([60, 600, 3600]),
            code=Blob(digest=hashlib.sha256(job_id.encode()).hexdigest(), size=rng.randrange(200, 9000)),
            config={"expected_time": 600},
        )
        yield JobScanned(job_id=job_id, verdict="approved")
        yield JobQueued(job_id=job_id)


def write_rows(path: Path, events: Iterator[AnyEvent], count_hint: int) -> None:
    conn = connect(path)
    migrate(conn)
    conn.pragma("synchronous", "OFF")  # a cache file: rebuilt if lost
    first_at = now_us() - count_hint * STEP_US
    prev, versions, rows = GENESIS, dict[str, int](), list[tuple[object, ...]]()
    for position, event in enumerate(events, start=1):
        stream, payload, type_ = stream_of(event), encode_event(event), event_tag(event)
        versions[stream] = version = versions.get(stream, 0) + 1
        at = first_at + position * STEP_US
        digest = chain_hash(prev, position, stream, version, type_, at, "bench", None, payload)
        rows.append((position, stream, version, type_, payload, at, "bench", None, prev, digest))
        prev = digest
        if len(rows) == 50_000:
            _insert(conn, rows)
    _insert(conn, rows)
    conn.close()


def _insert(conn: apsw.Connection, rows: list[tuple[object, ...]]) -> None:
    with conn:
        conn.executemany(f"INSERT INTO events ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    rows.clear()


def built(name: str, events: Iterator[AnyEvent], count_hint: int) -> Path:
    """The cached ledger ``name`` (built now when missing or stale)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}-v{VERSION}.db"
    if path.exists() and time.time() - path.stat().st_mtime < MAX_AGE_S:
        return path
    for stale in CACHE.glob(f"{name}-v{VERSION}.db*"):
        stale.unlink()
    began = time.perf_counter()
    partial = path.with_suffix(".partial")
    older = CACHE / f"{name}-v{UPGRADES_FROM}.db" if UPGRADES_FROM is not None else None
    if older is not None and older.exists() and time.time() - older.stat().st_mtime < MAX_AGE_S:
        shutil.copyfile(older, partial)  # the same events: opening migrates the copy (and rebuilds)
    else:
        write_rows(partial, events, count_hint)
    open_store(partial).close()  # no checkpoint: the projection tables are rebuilt by the fast replay
    conn = connect(partial)
    snapshots.write_missing(conn, SNAPSHOT_EVERY)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    partial.rename(path)
    print(f"  (built {name} in {time.perf_counter() - began:.1f} s, cached at {path})", flush=True)
    return path


def history_ledger(count: int) -> Path:
    return built(f"history-{count}", history(count), count)


def queue_ledger(pending: int) -> Path:
    return built(f"queue-{pending}", queue(pending), 3 * pending)


def working_copy(source: Path, directory: Path) -> Path:
    """A copy to run a server on (the server appends: its own node check, tokens' use)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "gpuledger.db"
    shutil.copyfile(source, target)
    return target
