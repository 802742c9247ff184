"""Many writers racing on one stream at the same expected versions: one winner per version, no gaps."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from ledger.domain.errors import ConcurrencyConflict
from ledger.domain.events import AnyEvent, NodeDown, NodeRegistered
from ledger.store.store import read_stream
from projections.live import open_ledger, open_store

STREAM = "node-race"
ROUNDS = 15


def claim(writer: str, version: int) -> AnyEvent:
    """The event ``writer`` tries to append as ``version`` of the race stream (its payload names both)."""
    if version == 1:
        return NodeRegistered(name="race", host=writer)
    return NodeDown(name="race", reason=f"{writer}@{version}")


def stored_claims(db: Path) -> list[tuple[int, str]]:
    """(version, claimant) of every stored row of the race stream, in version order."""
    store = open_store(db)
    try:
        rows = [(r.version, r.event) for r in read_stream(store.conn, STREAM)]
    finally:
        store.close()
    return [
        (v, e.host if isinstance(e, NodeRegistered) else e.reason.split("@")[0])  # type: ignore[union-attr]
        for v, e in rows
    ]


def assert_one_winner_per_version(wins: list[tuple[int, str]], db: Path, expected: int) -> None:
    """Versions 1..expected each won exactly once, and each stored row is its winner's own event."""
    assert sorted(v for v, _ in wins) == list(range(1, expected + 1))
    assert stored_claims(db) == sorted(wins)


async def test_asyncio_writers_on_one_ledger(tmp_path: Path) -> None:
    """16 tasks append at the same expected version each round; exactly one wins each round."""
    db = tmp_path / "l.db"
    ledger = open_ledger(db)
    await ledger.start()
    wins: list[tuple[int, str]] = []
    try:
        for expected in range(ROUNDS):
            writers = [f"task{i}" for i in range(16)]
            results = await asyncio.gather(
                *(ledger.append(STREAM, expected, [claim(w, expected + 1)]) for w in writers), return_exceptions=True
            )
            winners = [w for w, r in zip(writers, results, strict=True) if not isinstance(r, BaseException)]
            assert len(winners) == 1
            assert all(isinstance(r, ConcurrencyConflict) for r in results if isinstance(r, BaseException))
            wins.append((expected + 1, winners[0]))
    finally:
        await ledger.close()
    assert_one_winner_per_version(wins, db, ROUNDS)


def test_threads_with_their_own_stores(tmp_path: Path) -> None:
    """6 threads, each with its own EventStore on the file, race at each version; one wins each time."""
    db = tmp_path / "l.db"
    open_store(db).close()
    threads, barrier = 6, threading.Barrier(6)
    wins: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def race(name: str) -> None:
        store = open_store(db)
        try:
            for expected in range(ROUNDS):
                barrier.wait(timeout=30)
                try:
                    store.append(STREAM, expected, [claim(name, expected + 1)])
                    wins.append((expected + 1, name))
                except ConcurrencyConflict:
                    pass
                except BaseException as e:
                    errors.append(e)
        finally:
            store.close()

    workers = [threading.Thread(target=race, args=(f"thread{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert_one_winner_per_version(wins, db, ROUNDS)


async def test_tasks_and_threads_race_until_done(tmp_path: Path) -> None:
    """Tasks on a Ledger and threads with their own stores retry on conflict; versions stay contiguous.
    The race goes on past 120 versions until each kind has won at least once (on a loaded machine the
    threads can take the first hundreds), up to a ceiling that only starvation would reach."""
    db, target, ceiling = tmp_path / "l.db", 120, 5000
    ledger = open_ledger(db)
    await ledger.start()
    wins: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def racing(expected: int) -> bool:
        both = {name[:4] for _, name in wins} >= {"task", "thre"}
        return expected < ceiling and (expected < target or not both)

    async def task_writer(name: str) -> None:
        while racing(expected := ledger.views.stream_version(STREAM)):
            try:
                await ledger.append(STREAM, expected, [claim(name, expected + 1)])
                wins.append((expected + 1, name))
            except ConcurrencyConflict:
                await asyncio.sleep(0)

    def thread_writer(name: str) -> None:
        store = open_store(db)
        try:
            while racing(expected := store.views.stream_version(STREAM)):
                try:
                    store.append(STREAM, expected, [claim(name, expected + 1)])
                    wins.append((expected + 1, name))
                except ConcurrencyConflict:
                    store.refresh()
        except BaseException as e:
            errors.append(e)
        finally:
            store.close()

    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(task_writer(f"task{i}") for i in range(8)),
                *(asyncio.to_thread(thread_writer, f"thread{i}") for i in range(3)),
            ),
            timeout=60,
        )
    finally:
        await ledger.close()
    assert errors == []
    assert_one_winner_per_version(wins, db, max(v for v, _ in wins))
    assert {name[:4] for _, name in wins} >= {"task", "thre"}
