"""Ledger benchmark: durable appends and projection rebuild, each against a baseline measured in the same run.

    python bench/appends.py [--events N] [--db PATH] [--appenders 64]

Prints one line per figure, the figure last. Leaves the bulk-written ledger at ``--db`` so that
``gpuledger audit verify --db PATH`` can be run on it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import apsw

from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobScanned,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    decode_event,
    encode_event,
    event_tag,
    stream_of,
)
from ledger.store.schema import connect
from ledger.store.store import GENESIS, Write, chain_hash
from projections.audit import rebuild
from projections.live import open_ledger, open_store

NODES = [f"gpu-node-{i}" for i in range(8)]
USERS = [f"user{i:04d}" for i in range(2000)]
BASELINE_EVENTS = 20_000
CONCURRENT_TARGET, REBUILD_TARGET = 0.3, 0.25


def lifecycle(job_id: str, rng: random.Random) -> list[AnyEvent]:
    """One job's events: submitted, scanned, queued, dispatched, started, finished (or cancelled early)."""
    node = rng.choice(NODES)
    events: list[AnyEvent] = [
        JobSubmitted(
            job_id=job_id,
            user_id=rng.choice(USERS),
            competition_id="spaceship-titanic",
            project_id=f"proj-{rng.randrange(50)}",
            expected_time_s=rng.choice([60, 600, 3600]),
            code=Blob(digest=hashlib.sha256(job_id.encode()).hexdigest(), size=rng.randrange(200, 9000)),
            config={"expected_time": 600, "competition_id": "spaceship-titanic"},
        ),
        JobScanned(job_id=job_id, verdict="approved"),
        JobQueued(job_id=job_id),
    ]
    if rng.random() < 0.05:
        return [*events, JobFinished(job_id=job_id, status="cancelled", reason="cancelled")]
    exit_code = 0 if rng.random() < 0.8 else 1
    out = Blob(digest=hashlib.sha256(job_id.encode() + b"o").hexdigest(), size=rng.randrange(10_000))
    return [
        *events,
        JobDispatched(job_id=job_id, node=node, attempt=1, workdir=f"/srv/gpuledger/jobs/{job_id}"),
        JobStarted(job_id=job_id, node=node, attempt=1, pid=4242, pgid=4242),
        JobFinished(
            job_id=job_id,
            status="completed" if exit_code == 0 else "failed",
            reason="exit_zero" if exit_code == 0 else "exit_nonzero",
            exit_code=exit_code,
            attempt=1,
            stdout=out,
            stderr=out,
        ),
    ]


def event_stream(tag: str, seed: int = 1) -> Iterator[AnyEvent]:
    """Endless realistic events: node registrations, then job lifecycles (a few jobs interleaved).

    Job ids start with a sequence number, as the API's ULIDs start with a time: jobs active together
    sit together in the projection tables."""
    rng = random.Random(seed)
    yield from (NodeRegistered(name=n, host=f"10.0.0.{i}") for i, n in enumerate(NODES))
    for n in itertools.count(0, 4):
        jobs = [lifecycle(f"{n + k:08d}-{tag}", rng) for k in range(4)]
        for step in itertools.zip_longest(*jobs):
            yield from (e for e in step if e is not None)


def prepared(events: Iterator[AnyEvent]) -> list[tuple[str, int, AnyEvent]]:
    """(stream, expected version, event) for each event, generated before any timing starts."""
    versions: dict[str, int] = {}
    work = []
    for event in events:
        stream = stream_of(event)
        work.append((stream, versions.get(stream, 0), event))
        versions[stream] = versions.get(stream, 0) + 1
    return work


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def baseline_inserts(path: Path, count: int, per_transaction: int = 100) -> float:
    """Raw APSW: the same event rows (hashes precomputed), 100 per transaction, WAL, synchronous=FULL.

    With ``per_transaction`` 64 it is the ceiling of 64 appenders: each awaits its own append, so no
    batch holds more than 64 events, and this is those transactions with no Python around them."""
    conn = connect(fresh(path))
    conn.execute(Path(__file__).resolve().parent.parent.joinpath("migrations", "0001_events.sql").read_text())
    rows, prev, versions = [], GENESIS, {}
    for position, event in enumerate(itertools.islice(event_stream("b"), count), start=1):
        stream, payload = stream_of(event), encode_event(event)
        versions[stream] = version = versions.get(stream, 0) + 1
        digest = chain_hash(prev, position, stream, version, event_tag(event), 0, "system", None, payload)
        rows.append((position, stream, version, event_tag(event), payload, 0, "system", None, prev, digest))
        prev = digest
    began = time.perf_counter()
    for first in range(0, count, per_transaction):
        with conn:
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[first : first + per_transaction]
            )
    elapsed = time.perf_counter() - began
    conn.close()
    return count / elapsed


async def concurrent_appends(
    path: Path, count: int, appenders: int, phases: dict[str, list[float]] | None = None
) -> float:
    """``appenders`` tasks on one Ledger, each awaiting its own one-event append, ``count`` events in all.

    ``phases``: where each event's time went, in µs, appended per phase: the writer's own
    (``EventStore.spent``) and ``loop`` for the rest of the wall time (the event loop's hand-offs and
    the appenders' Python, while the writer waits for their next writes)."""
    ledger = open_ledger(fresh(path))
    await ledger.start()
    per_task = count // appenders
    work = [prepared(itertools.islice(event_stream(f"c{i}", seed=i), 8, 8 + per_task)) for i in range(appenders)]

    async def appender(index: int) -> None:
        for stream, version, event in work[index]:  # each task appends its own jobs' events, in order
            await ledger.append(stream, version, [event])

    began = time.perf_counter()
    await asyncio.gather(*(appender(i) for i in range(appenders)))
    elapsed = time.perf_counter() - began
    batches, spent = ledger.batches, dict(ledger.store.spent)
    await ledger.close()
    appended = per_task * appenders
    print(f"  ({appended} appends in {batches} group commits)")
    if phases is not None:
        for phase, seconds in (*spent.items(), ("loop", elapsed - sum(spent.values()))):
            phases.setdefault(phase, []).append(seconds / appended * 1e6)
    return appended / elapsed


async def append_latency(path: Path, count: int) -> tuple[float, float]:
    """p50 and p99 (ms) of one durable append at a time, no contention."""
    ledger = open_ledger(fresh(path))
    await ledger.start()
    timings = []
    for stream, version, event in prepared(itertools.islice(event_stream("l"), count)):
        began = time.perf_counter()
        await ledger.append(stream, version, [event])
        timings.append((time.perf_counter() - began) * 1000)
    await ledger.close()
    quantiles = statistics.quantiles(timings, n=100)
    return quantiles[49], quantiles[98]


def bulk_write(path: Path, count: int, per_execute: int = 5000) -> float:
    """``count`` events through EventStore.execute, ``per_execute`` events (one write per job) a transaction."""
    store = open_store(fresh(path))
    events = itertools.islice(event_stream("j"), count)
    began = time.perf_counter()
    written = 0
    while written < count:
        chunk = list(itertools.islice(events, per_execute))
        writes, by_stream = [], {}
        for event in chunk:
            by_stream.setdefault(stream_of(event), []).append(event)
        for stream_events in by_stream.values():
            writes.append(Write(decide=lambda _views, e=stream_events: e))
        store.execute(writes)
        written += len(chunk)
    elapsed = time.perf_counter() - began
    store.close()
    return count / elapsed


def read_and_decode(conn: apsw.Connection) -> tuple[int, float]:
    began = time.perf_counter()
    n = 0
    for (payload,) in conn.execute("SELECT payload FROM events ORDER BY position"):
        decode_event(payload)
        n += 1
    return n, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the rebuilt ledger")
    parser.add_argument("--db", type=Path, default=Path("bench-ledger.db"), help="where the bulk ledger is left")
    parser.add_argument("--appenders", type=int, default=64)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=args.db.resolve().parent))

    baseline = baseline_inserts(scratch / "baseline.db", BASELINE_EVENTS)
    print(f"baseline raw APSW inserts (100/txn, WAL, FULL): {baseline:.0f} events/s")
    concurrent = asyncio.run(concurrent_appends(scratch / "concurrent.db", BASELINE_EVENTS, args.appenders))
    print(f"ledger durable appends ({args.appenders} concurrent appenders): {concurrent:.0f} events/s")
    print(f"concurrent appends / baseline (target >= {CONCURRENT_TARGET}): {concurrent / baseline:.2f}")
    ceiling = baseline_inserts(scratch / "ceiling.db", BASELINE_EVENTS, args.appenders)
    print(
        f"raw APSW inserts, {args.appenders}/txn (the batches {args.appenders} appenders allow): {ceiling:.0f} events/s"
    )
    print(
        f"  that ceiling / baseline: {ceiling / baseline:.2f}; "
        f"concurrent appends / that ceiling: {concurrent / ceiling:.2f}"
    )
    p50, p99 = asyncio.run(append_latency(scratch / "latency.db", 500))
    print(f"single append latency p50, no contention: {p50:.2f} ms")
    print(f"single append latency p99, no contention: {p99:.2f} ms")
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()

    written = bulk_write(args.db, args.events)
    print(f"bulk write through EventStore.execute (5000 events/txn): {written:.0f} events/s")
    conn = connect(args.db)
    rows, raw_elapsed = read_and_decode(conn)
    raw = rows / raw_elapsed
    print(f"raw read + msgspec decode of {rows} events: {raw:.0f} events/s")
    began = time.perf_counter()
    rebuild(conn)
    rebuilt = rows / (time.perf_counter() - began)
    print(f"full projection rebuild of {rows} events: {rebuilt:.0f} events/s")
    print(f"rebuild / raw read+decode (target >= {REBUILD_TARGET}): {rebuilt / raw:.2f}")
    # The same rebuild into emptied tables: every row written, nothing left to keep.
    with conn:
        for table in ("proj_jobs", "proj_users", "proj_nodes", "proj_tokens"):
            conn.execute(f"DELETE FROM {table}")
    began = time.perf_counter()
    rebuild(conn)
    cold = rows / (time.perf_counter() - began)
    conn.close()
    print(f"full projection rebuild into empty tables of {rows} events: {cold:.0f} events/s")
    print(f"rebuild into empty tables / raw read+decode: {cold / raw:.2f}")
    print(f"ledger left at {args.db} ({os.path.getsize(args.db) // 2**20} MiB): gpuledger audit verify --db {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
