"""The one connection policy and the numbered migrations keyed on ``PRAGMA user_version``."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
from importlib import resources
from pathlib import Path

import apsw
import apsw.bestpractice

from ledger.domain.errors import NoSchema, SchemaError, StoreError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) for every shipped migration, in order; numbers must be 1, 2, 3, ..."""
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise SchemaError(f"migration {name} is out of sequence: expected number {expected:04d}")
    return found


def code_version() -> int:
    return len(migrations())


BUSY_TIMEOUT_MS = 10_000


def connection_busy_timeout(connection: apsw.Connection) -> None:
    """bestpractice's hook with the ledger's wait: its 100 ms made an open during another commit fail
    (``connection_optimize`` needs the write lock)."""
    connection.set_busy_timeout(BUSY_TIMEOUT_MS)


def connection_optimize(connection: apsw.Connection) -> None:
    """bestpractice's ``PRAGMA optimize`` at open, skipped when the disk refuses it: it may write
    (ANALYZE), and an optimisation must not stop the ledger from opening on a full disk."""
    with contextlib.suppress(apsw.FullError, apsw.IOError):
        apsw.bestpractice.connection_optimize(connection)


_OWN_HOOKS = {
    apsw.bestpractice.connection_busy_timeout: connection_busy_timeout,
    apsw.bestpractice.connection_optimize: connection_optimize,
}


@functools.cache
def _apply_best_practice() -> None:
    # Once per process: each apply() adds another connection hook that every later open would run.
    recommended = apsw.bestpractice.recommended
    apsw.bestpractice.apply(tuple(_OWN_HOOKS.get(hook, hook) for hook in recommended))


def connect(path: str | Path, *, readonly: bool = False) -> apsw.Connection:
    """Open the ledger file with the project's settings: WAL, synchronous=FULL, busy timeout."""
    _apply_best_practice()
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(str(path), flags=flags)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        if not readonly:
            keep_wal_files(conn)
            conn.pragma("journal_mode", "wal")
        # FULL: an acknowledged commit survives power loss, not only a process crash.
        conn.pragma("synchronous", "FULL")
    except apsw.Error as e:
        raise StoreError(f"cannot open ledger {path}: {e}") from e
    return conn


def keep_wal_files(conn: apsw.Connection) -> None:
    """Leave ``-wal`` and ``-shm`` in place when the last connection closes (SQLITE_FCNTL_PERSIST_WAL):
    the next open on a full disk could not size a new ``-shm``, and the ledger would not open at all."""
    persist = ctypes.c_int(1)
    conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))


def migrate(conn: apsw.Connection) -> int:
    """Apply pending migrations, each in its own transaction; refuse a database newer than the code."""
    available = migrations()
    current = conn.pragma("user_version")
    if current > len(available):
        raise SchemaError(
            f"database schema version {current} is newer than this gpuledger's schema version "
            f"{len(available)}; upgrade gpuledger before opening it"
        )
    for number, name, sql in available[current:]:
        try:
            with conn:
                conn.execute(sql)
                conn.pragma("user_version", number)
        except apsw.Error as e:
            raise SchemaError(f"migration {name} failed: {e}") from e
    return len(available)


def open_existing(path: str | Path) -> apsw.Connection:
    """Open a ledger that must already exist (audit and read-only commands never create one)."""
    if not Path(path).exists():
        raise StoreError(f"no ledger at {path}")
    conn = connect(path)
    version = conn.pragma("user_version")
    if version > code_version():
        raise SchemaError(
            f"database schema version {version} is newer than this gpuledger's schema "
            f"version {code_version()}; upgrade gpuledger before opening it"
        )
    if version < code_version():
        migrate(conn)
    return conn


def open_readonly(path: str | Path) -> apsw.Connection:
    """Open an existing ledger without ever writing to it: no migration, no checkpoint (``audit verify``
    checks a file exactly as it is)."""
    if not Path(path).exists():
        raise StoreError(f"no ledger at {path}")
    conn = connect(path, readonly=True)
    version = conn.pragma("user_version")
    if version > code_version():
        raise SchemaError(
            f"database schema version {version} is newer than this gpuledger's schema "
            f"version {code_version()}; upgrade gpuledger before opening it"
        )
    if version == 0:
        raise NoSchema(f"{path} holds no gpuledger schema (user_version 0)")
    if version < code_version():
        raise SchemaError(
            f"database schema version {version} is older than this gpuledger's ({code_version()}): start the "
            "server on it once (it migrates), then verify; verify never writes to the file it checks"
        )
    return conn


def wal_missing(path: str | Path) -> bool:
    """A WAL-mode main file with no ``-wal`` beside it: if it was copied from a running server, its
    newest pages (perhaps all of its events) stayed in the WAL that was not copied."""
    with Path(path).open("rb") as handle:
        header = handle.read(20)
    return len(header) == 20 and header[18:20] == b"\x02\x02" and not Path(f"{path}-wal").exists()
