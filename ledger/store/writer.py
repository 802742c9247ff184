"""The asynchronous face of the ledger: one writer thread that group-commits, and commit notifications.

Callers ``await ledger.write(...)``; the writer thread takes everything waiting, runs it as one
transaction (one fsync) and answers each caller only after the commit returned. Subscribers wait on
``wait_beyond(position)``, woken by the commit itself; appends by other processes on the same file are
noticed through ``PRAGMA data_version``, a cheap change counter, within ``watch_interval`` seconds.

A batch whose transaction fails answers every caller with the error (none with a success), and
subscribers hear only of heads the store holds after it (``EventStore`` reloads what is durable).
While writes fail, the idle writer tries the projection rows every ``PROBE_S``: ``writable`` comes
back by itself once the disk takes writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Generic

import structlog

from ledger.domain.errors import LedgerError
from ledger.domain.events import AnyEvent, Recorded
from ledger.store.disk import DiskReserve
from ledger.store.schema import connect
from ledger.store.state import S, StateTables
from ledger.store.store import Committed, EventStore, Write, max_position, read_after, read_stream

log = structlog.get_logger()
MAX_BATCH = 1024
GATHER_S = 0.005  # the longest the writer waits for the loop to hand over the callers it just answered
PROBE_S = 2.0  # while the ledger cannot write: how often the idle writer tries again
_STOP = object()


class Ledger(Generic[S]):
    """The running ledger of one server process, and the state it keeps folded (``projections.open_ledger``)."""

    def __init__(
        self,
        path: str | Path,
        tables: StateTables[S],
        *,
        watch_interval: float = 0.25,
        projection_interval_s: float = 1.0,
        reserve: DiskReserve | None = None,
    ) -> None:
        self.path = Path(path)
        self.store = EventStore(self.path, tables, projection_interval_s=projection_interval_s, reserve=reserve)
        self.reader = connect(self.path)
        self.watch_interval = watch_interval
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Clear from a commit until the loop has run the callers it answered (their next writes queued).
        self._answered = threading.Event()
        self._answered.set()
        self._watcher: asyncio.Task[None] | None = None
        self._probed = 0.0
        self.batches = 0
        self.committed = self.store.head
        self._committed = self.store.head  # what subscribers may see: the head as of the last commit

    @property
    def views(self) -> S:
        """The views as of the last commit, for readers: an immutable snapshot (one attribute read)."""
        return self.store.published

    @property
    def head(self) -> int:
        return self._committed

    @property
    def writer_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def writable(self) -> bool:
        """The writer runs and its last write that reached the disk went through."""
        return self.writer_alive and self.store.writable

    @property
    def last_write_error(self) -> str | None:
        return self.store.last_error

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run_writer, name="ledger-writer", daemon=True)
        self._thread.start()
        self._watcher = asyncio.create_task(self._watch_other_processes(), name="ledger-watch")

    async def close(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._thread:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
        self.reader.close()
        self.store.close()

    # --- writing ------------------------------------------------------------------------------

    async def write(self, write: Write) -> Committed:
        """Append atomically; returns once durable, raises the write's own domain or conflict error."""
        assert self._loop is not None, "Ledger.start() was not awaited"
        future: asyncio.Future[Committed | LedgerError] = self._loop.create_future()
        self._queue.put((write, future))
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    async def append(
        self,
        stream: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        *,
        actor: str = "system",
        idempotency_key: str | None = None,
        fingerprint: bytes = b"",
    ) -> Committed:
        return await self.write(
            Write(
                decide=lambda _views: events,
                actor=actor,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                expected={stream: expected_version},
            )
        )

    def _run_writer(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.store.projection_interval_s or None)
            except queue.Empty:  # idle: let the projection tables catch up with the log
                if not self.store.writable:
                    self._probe()
                elif self.store.projections_behind:
                    self._checkpoint()
                continue
            if item is _STOP:
                self._checkpoint()
                return
            # Group commit: the callers of the last batch are likely writing again; wait (briefly) until
            # the loop has run them, so they share this batch rather than each start a small one.
            self._answered.wait(GATHER_S)
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            batch = [b for b in batch if b is not _STOP]
            self._commit(batch)  # type: ignore[arg-type]
            if stop:
                self._checkpoint()
                return

    def _probe(self) -> None:
        if time.monotonic() - self._probed >= PROBE_S:
            self._probed = time.monotonic()
            self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            self.store.write_projections()
        except Exception as e:  # the rows are rewritten from the log at the next try or start
            log.error("ledger.projections_failed", error=str(e))

    def _commit(self, batch: list[tuple[Write | None, asyncio.Future[object]]]) -> None:
        writes = [w for w, _ in batch if w is not None]
        try:
            results: list[object] = list(self.store.execute(writes))
        except Exception as e:  # the whole transaction failed: every caller hears why
            log.error("ledger.write_failed", error=str(e))
            results = [e] * len(writes)
        self.batches += 1
        assert self._loop is not None
        answers = iter(results)
        values = [(future, next(answers) if write is not None else None) for write, future in batch]
        # One wake-up of the loop per batch, not one per caller (fewer GIL hand-offs with the writer).
        self._answered.clear()
        self._loop.call_soon_threadsafe(self._deliver, values, self.store.head)

    def _deliver(self, values: list[tuple[asyncio.Future[object], object]], head: int) -> None:
        # store.head moves during the transaction; subscribers hear only of committed positions.
        self._notify(head)
        for future, value in values:  # inline, not a call per caller: this is the loop's hot path
            if not future.done():  # a caller that was cancelled meanwhile
                future.set_result(value)
        # Scheduled after the callers' own wake-ups: it runs once each of them has taken its next step.
        self._loop.call_soon(self._answered.set)  # type: ignore[union-attr]

    def _notify(self, head: int) -> None:
        self._committed = head
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- waiting and reading ------------------------------------------------------------------

    async def wait_beyond(self, position: int, timeout: float | None = None) -> int:
        """Wait until the head is past ``position`` (or the timeout passes); returns the head."""
        try:
            async with asyncio.timeout(timeout):
                while self._committed <= position:
                    await self._changed.wait()
        except TimeoutError:
            pass
        return self._committed

    async def refresh(self) -> None:
        """Have the writer fold what other processes appended (used by the watcher and tests)."""
        assert self._loop is not None
        future: asyncio.Future[object] = self._loop.create_future()
        self._queue.put((None, future))
        await future

    async def _watch_other_processes(self) -> None:
        seen = self.reader.pragma("data_version")
        while True:
            await asyncio.sleep(self.watch_interval)
            version = self.reader.pragma("data_version")
            if version == seen:
                continue
            seen = version
            last = max_position(self.reader)
            if last > self._committed:
                await self.refresh()

    def events_after(self, position: int, limit: int | None = None) -> list[Recorded]:
        return read_after(self.reader, position, limit)

    def stream(self, stream: str) -> list[Recorded]:
        return read_stream(self.reader, stream)
