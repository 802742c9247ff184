"""The event store on APSW: append-only rows, a SHA-256 hash chain, the folded state in the same transaction.

``EventStore.execute`` is the single write path. Each ``Write`` runs its decide step against the live
views *inside* the write transaction, so checks that span streams (a user's active-job cap, rate
limits, node slots) and the append are one serial step: two requests can never both pass a check.
Several writes share one transaction and one fsync (group commit, driven by ``ledger.store.writer``).

A transaction that fails in any phase leaves the store as the file is: the views and the head are
loaded again from disk without writing (SQLite may already have rolled back by itself, on a full disk).

``views`` is the writer's state (decide steps fold into it as they go) and holds only what decisions
read. ``read`` holds the read models: after each ``COMMIT`` the store folds the transaction's committed
records into them, then publishes both for readers as ``published``, an immutable snapshot; a batch
that fails reaches neither, so no read sees an uncommitted event.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

import apsw
import msgspec
import structlog

from ledger.domain.clock import now_us
from ledger.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    IdempotencyConflict,
    LedgerError,
    LedgerUnavailable,
    SchemaError,
    StoreError,
)
from ledger.domain.events import (
    EVENT_TAGS,
    AnyEvent,
    Recorded,
    decode_event,
    encode_payload,
    event_tag,
    stream_of,
)
from ledger.store.disk import DiskReserve, disk_full
from ledger.store.schema import connect, migrate
from ledger.store.state import LedgerState, ReadSide, S, StateTables

log = structlog.get_logger()
GENESIS = bytes(32)
PROJECTIONS_HOLD_S = 5.0  # after a full disk refused the projection rows: events only, for this long
# Driver errors that say "not now" (the disk, the lock), as opposed to a bug or a damaged file.
UNAVAILABLE = (apsw.FullError, apsw.IOError, apsw.BusyError, apsw.LockedError, apsw.CantOpenError, apsw.ReadOnlyError)
WRITE_PHASES = ("decide", "insert", "projections", "commit")
_header = msgspec.json.Encoder().encode

Decide = Callable[[LedgerState], Sequence[AnyEvent]]


@dataclass(slots=True)  # not frozen: a frozen dataclass pays object.__setattr__ per field, per append
class Write:
    """One atomic append: events decided against the current views, optionally version-checked."""

    decide: Decide
    actor: str = "system"
    idempotency_key: str | None = None
    fingerprint: bytes = b""
    expected: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Committed:
    records: list[Recorded]
    replayed: bool = False
    first_position: int = 0
    last_position: int = 0


def chain_hash(
    prev: bytes,
    position: int,
    stream: str,
    version: int,
    type_: str,
    recorded_at: int,
    actor: str,
    idempotency_key: str | None,
    payload: bytes,
) -> bytes:
    """SHA-256 over the previous hash and the canonical bytes of one event row."""
    header = _header([position, stream, version, type_, recorded_at, actor, idempotency_key])
    return hashlib.sha256(prev + header + b"\n" + payload).digest()


ROW_COLUMNS = "position, stream, version, type, payload, recorded_at, actor, idempotency_key, prev_hash, hash"


def record_of(row: Sequence[Any]) -> Recorded:
    position, stream, version, _type, payload, recorded_at, actor, key = row[:8]
    return Recorded(
        position=position,
        stream=stream,
        version=version,
        event=decode_event(payload),
        recorded_at=recorded_at,
        actor=actor,
        idempotency_key=key,
    )


class EventStore(Generic[S]):
    """One writer connection to one ledger file, and the state folded up to its head.

    ``tables`` say how the state is loaded and persisted (``projections.open_store`` passes the views).
    """

    def __init__(
        self,
        path: str | Path,
        tables: StateTables[S],
        *,
        projection_interval_s: float = 0.0,
        projection_max_dirty: int = 5000,
        reserve: DiskReserve | None = None,
    ) -> None:
        """``projection_interval_s`` 0: projection rows are written in every transaction (one-shot
        commands). A server passes a second or so: rows and checkpoint then follow the log in their
        own rhythm (at most that late, or ``projection_max_dirty`` rows), keeping commits small.
        ``reserve``: room given back to the ledger when the disk is full (``ledger.store.disk``)."""
        self.path = Path(path)
        self.tables = tables
        self.projection_interval_s = projection_interval_s
        self.projection_max_dirty = projection_max_dirty
        self._projections_written = time.monotonic()
        self._projections_held_until = 0.0
        self.reserve = reserve
        self.writable = True  # the last write that reached the disk went through
        self.last_error: str | None = None
        self._retired: LedgerState | None = None
        self._stale = False
        self.conn = self._with_room(self._open)
        self.head = 0
        self.head_hash = GENESIS
        self._pending: list[tuple[object, ...]] = []  # event rows of this transaction not yet inserted
        self._unread: list[Recorded] = []  # records of this transaction: the read models fold them once committed
        # Where the writer's time goes, in seconds since open (``/metrics``, ``bench/scale.py``):
        # decide (decide steps, checks, rows, chain hash, fold), insert, projections, commit (fsync).
        self.spent = dict.fromkeys(WRITE_PHASES, 0.0)
        self.appended = 0
        self._rows_in_transaction = 0
        self.views, self.read = self._load_views()
        self.published: S = self.tables.publish(self.views, self.read)  # what readers see: the last commit
        self._write_snapshot()

    # --- opening and catching up --------------------------------------------------------------

    def _open(self) -> apsw.Connection:
        conn = connect(self.path)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _with_room(self, step: Callable[[], Any]) -> Any:
        """Run ``step``; when the disk is full, once more after giving the reserve back."""
        try:
            return step()
        except (StoreError, SchemaError) as e:
            # Not only SQLITE_FULL: opening a WAL file on a full disk fails to size its -shm (an I/O error).
            room = isinstance(e.__cause__, (apsw.FullError, apsw.IOError))  # not a lock another holds
            if not room or self.reserve is None or not self.reserve.release():
                raise
            return step()

    def _load_views(self) -> tuple[LedgerState, ReadSide]:
        """At open: fold the log's tail and write the rows it changed; on a disk with no room for
        those rows, the same state without writing (the next write that goes through writes them)."""
        try:
            return self._with_room(lambda: self._load(write=True))  # type: ignore[no-any-return]
        except StoreError as e:
            if not isinstance(e, LedgerUnavailable):
                raise
            self._failed(e)
            return self._load(write=False)

    def _load(self, *, write: bool) -> tuple[LedgerState, ReadSide]:
        # Writing, the write lock first: tables, checkpoint and log are then one state, and the catch-up
        # write cannot fail on a snapshot another process moved past (a deferred read-then-write would).
        # Reading, one snapshot that is rolled back: nothing on disk changes.
        before, (self.head, self.head_hash) = (self.head, self.head_hash), (0, GENESIS)
        try:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            views, read = self.tables.load(self.conn, readonly=not write)
            last = self.conn.execute(
                "SELECT position, recorded_at FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            if last and views.position > last[0]:
                views, read = self.tables.empty()  # checkpoint ahead of the log: only a rebuild can be trusted
            if last:  # recorded_at never goes backwards along the log, even across a restart
                views.recorded_at = read.recorded_at = last[1]
            self._fold_after(views, read, views.position)
            if write:
                self.tables.write_dirty(self.conn, views)
                self.conn.execute("COMMIT")
        except BaseException as e:
            self.head, self.head_hash = before  # not a head of views that were never loaded
            if isinstance(e, apsw.Error):
                raise unavailable(e) from e
            raise
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        return views, read

    def _fold_after(self, views: LedgerState, read: ReadSide | None, position: int) -> None:
        """Fold the rows after ``position`` into the writer's state, and into ``read`` (at a load: they
        are committed) or, inside a write, into the read models once that write commits."""
        for row in self.conn.execute(
            f"SELECT {ROW_COLUMNS} FROM events WHERE position > ? ORDER BY position", (position,)
        ):
            record = record_of(row)
            views.apply_event(record.event, record.position, record.stream, record.version, record.recorded_at)
            if read is None:
                self._unread.append(record)
            else:
                read.apply_event(record.event, record.position, record.stream, record.version, record.recorded_at)
            self.head, self.head_hash = row[0], row[9]
        if self.head == 0:
            last = self.conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
            if last:
                self.head, self.head_hash = last[0], last[1]

    def _catch_up(self) -> None:
        """Fold what other processes appended since our last write (we hold the write lock)."""
        last = max_position(self.conn)
        if last > self.head:
            self._fold_after(self.views, None, self.head)

    def refresh(self) -> bool:
        """Catch up with other processes' appends outside a write; True when something was new."""
        before = self.head
        self.execute([])
        return self.head > before

    # --- writing ------------------------------------------------------------------------------

    def execute(self, writes: Sequence[Write], *, write_projections: bool = False) -> list[Committed | LedgerError]:
        """Run every write in one transaction (one fsync); each gets its result or its own error.

        On a full disk the same writes are decided and tried again after making room: the reserve
        given back, or (once it is gone) the projection rows put off, as the log can be folded again.
        """
        for _ in range(3):
            projecting = self._projections_due(forced=write_projections)
            try:
                return self._transaction(writes, projecting)
            except LedgerUnavailable as e:
                if not e.full or not self._make_room(projecting):
                    raise
        return self._transaction(writes, False)

    def _make_room(self, projected: bool) -> bool:
        if self.reserve is not None and self.reserve.release():
            return True
        if projected:
            self._projections_held_until = time.monotonic() + PROJECTIONS_HOLD_S
            return True
        return False

    def _transaction(self, writes: Sequence[Write], projecting: bool) -> list[Committed | LedgerError]:
        spent, clock = self.spent, time.perf_counter
        try:
            began = clock()
            self._rows_in_transaction = 0
            if self._stale:
                self._reload()
            self.conn.execute("BEGIN IMMEDIATE")
            self._catch_up()
            results = [self._one(write) for write in writes]
            decided = clock()
            self._flush()
            inserted = clock()
            if projecting:
                self.tables.write_dirty(self.conn, self.views)
                self._projections_written = time.monotonic()
            projected = clock()
            self.conn.execute("COMMIT")
            committed = clock()
        except BaseException as e:
            error = unavailable(e) if isinstance(e, apsw.Error) else e
            self._abort(error)
            if error is not e:
                raise error from e
            raise
        if self._unread:  # only now: a failed commit reaches neither the read models nor the readers
            self._publish()
        if projecting:
            self._write_snapshot()
        if self._rows_in_transaction or projecting:  # something reached the disk: it has room again
            self._succeeded()
        self.appended += self._rows_in_transaction
        spent["decide"] += decided - began
        spent["insert"] += inserted - decided
        spent["projections"] += projected - inserted
        spent["commit"] += committed - projected
        return results

    def _publish(self) -> None:
        """Fold the committed records into the read models and publish both for readers."""
        read, records, self._unread = self.read, self._unread, []
        for record in records:
            read.apply_event(record.event, record.position, record.stream, record.version, record.recorded_at)
        self.published = self.tables.publish(self.views, read)

    def _write_snapshot(self) -> None:
        """After a commit that wrote the projection rows: a snapshot of what was published, when one is
        due. Its own short transaction; one that fails is tried again after the next such commit."""
        try:
            self.tables.write_snapshot(self.conn, self.published)
        except apsw.Error as e:
            log.warning("ledger.snapshot_failed", error=f"{type(e).__name__}: {e}", position=self.published.position)
            if self.conn.in_transaction:
                with contextlib.suppress(apsw.Error):
                    self.conn.execute("ROLLBACK")

    def _succeeded(self) -> None:
        if not self.writable:
            log.info("ledger.writable_again", after=self.last_error)
        self.writable = True
        if self.reserve is not None:
            self.reserve.restore_when_room()

    def _failed(self, error: StoreError) -> None:
        self.writable = False
        self.last_error = f"{type(error).__name__}: {error}"

    def _projections_due(self, *, forced: bool = False) -> bool:
        if time.monotonic() < self._projections_held_until:  # a full disk refused them just now
            return False
        if forced or self.projection_interval_s <= 0 or self.views.dirty_count() >= self.projection_max_dirty:
            return True
        return time.monotonic() - self._projections_written >= self.projection_interval_s

    @property
    def projections_behind(self) -> bool:
        return self.views.dirty_count() > 0

    def write_projections(self) -> None:
        """Bring the projection tables and their checkpoint up to the head now."""
        self.execute([], write_projections=True)

    def _flush(self) -> None:
        """Insert the transaction's event rows in one statement (one call, not one per write)."""
        if self._pending:
            self._rows_in_transaction += len(self._pending)
            self.conn.executemany(
                f"INSERT INTO events ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending
            )
            self._pending.clear()

    def _abort(self, error: BaseException) -> None:
        """After a failed transaction: the head and views become what is on disk, whatever failed.

        SQLite may have rolled back by itself (a full disk, an I/O error), so whether a transaction is
        still open says nothing of what the views folded: they are loaded again, reading only (the
        dirty rows stay dirty for the next write that goes through).
        """
        self._pending.clear()
        self._unread.clear()
        if isinstance(error, StoreError):
            self._failed(error)
        if self.conn.in_transaction:
            with contextlib.suppress(apsw.Error):  # a failed rollback: SQLite ends the transaction anyway
                self.conn.execute("ROLLBACK")
        self._reload()

    def _reload(self) -> None:
        """The views and head as the file holds them; until that succeeds no write folds into the old
        ones (``_stale``: the next transaction tries again first). The read models held only committed
        events: they stay as they are unless the file holds commits they have not seen."""
        self._stale = True
        views, read = self._load(write=False)
        retired, self._retired, self.views = self._retired, self.views, views
        self._stale = False
        if read.position != self.read.position:  # others' commits, folded by the load: committed
            self.read = read
            self.published = self.tables.publish(views, read)
        if retired is not None:  # two failures ago: no reader still holds it (its rows close per thread)
            retired.close()

    def _one(self, write: Write) -> Committed | LedgerError:
        if write.idempotency_key is not None:
            row = self.conn.execute(
                "SELECT fingerprint, first_position, last_position FROM idempotency WHERE key = ?",
                (write.idempotency_key,),
            ).fetchone()
            if row is not None:
                if bytes(row[0]) != write.fingerprint:
                    return IdempotencyConflict("Idempotency-Key was already used with a different request")
                self._flush()  # the original may be earlier in this very transaction
                return Committed(
                    records=list(self._read_range(row[1], row[2])),
                    replayed=True,
                    first_position=row[1],
                    last_position=row[2],
                )
        try:
            events = write.decide(self.views)
            if type(events) is not list:  # a lazy decide raises its DomainError here, as before
                events = list(events)
        except DomainError as e:
            return e
        known: dict[str, int] = {}  # the versions just checked: _insert need not look them up again
        for stream, expected in write.expected.items():
            known[stream] = actual = self.views.stream_version(stream)
            if actual != expected:
                return ConcurrencyConflict(f"stream {stream} is at version {actual}, expected {expected}")
        return self._insert(write, events, known)

    def _insert(self, write: Write, events: Sequence[AnyEvent], versions: dict[str, int]) -> Committed:
        """Rows, hash chain and fold of one write's events (``versions``: streams' versions known so far)."""
        if not events:
            return Committed(records=[])
        views = self.views
        recorded_at = max(now_us(), views.recorded_at)  # never goes backwards along the log
        actor, key = write.actor, write.idempotency_key  # the key goes on the write's first event
        head, head_hash = self.head, self.head_hash
        # The hot path of every append: locals, one fold per event as its row is built, and no
        # second walk over the records.
        known, apply, pending, sha256 = views.stream_version, views.apply_event, self._pending.append, hashlib.sha256
        records = []
        for event in events:
            stream = event.STREAM_PREFIX + event.stream_key
            version = versions.get(stream)
            versions[stream] = version = (known(stream) if version is None else version) + 1
            payload, type_ = encode_payload(event), EVENT_TAGS[type(event)]
            head += 1
            header = _header([head, stream, version, type_, recorded_at, actor, key])
            digest = sha256(b"".join((head_hash, header, b"\n", payload))).digest()  # as chain_hash
            pending((head, stream, version, type_, payload, recorded_at, actor, key, head_hash, digest))
            records.append(
                Recorded(
                    position=head,
                    stream=stream,
                    version=version,
                    event=event,
                    recorded_at=recorded_at,
                    actor=actor,
                    idempotency_key=key,
                )
            )
            apply(event, head, stream, version, recorded_at)
            head_hash, key = digest, None
        self.head, self.head_hash = head, head_hash
        self._unread += records
        first = records[0].position
        if write.idempotency_key is not None:
            self.conn.execute(
                "INSERT INTO idempotency (key, fingerprint, first_position, last_position) VALUES (?, ?, ?, ?)",
                (write.idempotency_key, write.fingerprint, first, head),
            )
        return Committed(records=records, first_position=first, last_position=head)

    def append(
        self,
        stream: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        *,
        actor: str = "system",
        idempotency_key: str | None = None,
        fingerprint: bytes = b"",
    ) -> Committed:
        """Append fixed events to one stream at an expected version (a mismatch writes nothing)."""
        for event in events:
            if stream_of(event) != stream:
                raise ValueError(f"{event_tag(event)} does not belong to stream {stream}")
        write = Write(
            decide=lambda _views: events,
            actor=actor,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            expected={stream: expected_version},
        )
        result = self.execute([write])[0]
        if isinstance(result, LedgerError):
            raise result
        return result

    # --- reading ------------------------------------------------------------------------------

    def _read_range(self, first: int, last: int) -> Iterator[Recorded]:
        for row in self.conn.execute(
            f"SELECT {ROW_COLUMNS} FROM events WHERE position BETWEEN ? AND ? ORDER BY position", (first, last)
        ):
            yield record_of(row)

    def close(self) -> None:
        if self._retired is not None:
            self._retired.close()
        self.views.close()
        self.conn.close()


def unavailable(error: apsw.Error) -> StoreError:
    """The one translation of a driver error: "not now" (503) or "broken" (a bug, a damaged file)."""
    if isinstance(error, UNAVAILABLE):
        return LedgerUnavailable(f"ledger write failed: {error}", full=disk_full(error))
    return StoreError(f"ledger write failed: {error}")


def max_position(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT max(position) FROM events").fetchone()
    return int(row[0] or 0) if row else 0


def read_after(conn: apsw.Connection, position: int, limit: int | None = None) -> list[Recorded]:
    sql = f"SELECT {ROW_COLUMNS} FROM events WHERE position > ? ORDER BY position"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [record_of(row) for row in conn.execute(sql, (position,))]


def read_stream(conn: apsw.Connection, stream: str) -> list[Recorded]:
    return [
        record_of(row)
        for row in conn.execute(f"SELECT {ROW_COLUMNS} FROM events WHERE stream = ? ORDER BY version", (stream,))
    ]
