"""``gpuledger backup DEST`` and ``gpuledger restore SRC``: a consistent, verified copy of the ledger
and its blobs while the server runs, and its return into an empty place.

A backup directory holds ``gpuledger.db`` (one self-contained file) and ``blobs/`` (the blobs its
events name). Both commands verify what they wrote before they say it worked.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from cli.common import add_db_option, existing_db
from ledger.domain.clock import iso
from ledger.domain.errors import StoreError
from ledger.store.backup import (
    BLOBS_NAME,
    LEDGER_NAME,
    Head,
    copy_blobs,
    copy_ledger,
    damaged_blobs,
    head_of,
)
from ledger.store.pruning import live_digests
from ledger.store.schema import connect
from ledger.store.settings import load_settings
from projections.audit import verify

SIDE_FILES = ("-wal", "-shm", "-journal", ".head")  # .head: the old ledger's last head (ledger.store.integrity)


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser("backup", help="a consistent, verified copy of the ledger and its blobs")
    backup.add_argument("dest", metavar="DEST", help="a new (or empty) directory to write the backup into")
    add_db_option(backup)
    backup.add_argument("--jobs-dir", metavar="DIR", help="where the blobs are (default: the JOBS_DIR setting)")
    backup.set_defaults(func=run_backup)

    restore = subparsers.add_parser("restore", help="put a backup back, into a place with no ledger")
    restore.add_argument("source", metavar="SRC", nargs="?", help="a directory written by `gpuledger backup`")
    restore.add_argument("--from-replica", action="store_true", help="from the [replica] target (Litestream)")
    restore.add_argument("--at", metavar="TIME", help="with --from-replica: the ledger as of this ISO 8601 time")
    restore.add_argument("--db", metavar="PATH", help="ledger file to create (default: the DATABASE_PATH setting)")
    restore.add_argument("--jobs-dir", metavar="DIR", help="where the blobs go (default: the JOBS_DIR setting)")
    restore.add_argument("--config", metavar="FILE", help="settings file (default: ./gpuledger.toml if present)")
    restore.set_defaults(func=run_restore)


def jobs_dir(args: argparse.Namespace) -> Path:
    return Path(args.jobs_dir or load_settings(args.config).storage.jobs_dir).resolve()


def head_line(head: Head) -> str:
    when = iso(head.recorded_at) if head.recorded_at is not None else "empty ledger"
    return f"head position {head.position} at {when}, hash {head.hash or '-'}"


def checked(ledger: Path, blobs: Path, known_missing: frozenset[str] = frozenset()) -> tuple[Head, int]:
    """Verify a ledger file and the blobs it names (but ``known_missing``), read-only; (its head, how
    many blobs) or StoreError."""
    conn = connect(ledger, readonly=True)
    try:
        problems = verify(conn)
        if problems:
            raise StoreError(f"{ledger} does not verify: {problems[0]}")
        digests = live_digests(conn)  # a pruned job's outputs are gone by design
        bad = damaged_blobs(digests - known_missing, blobs)
        if bad:
            raise StoreError(f"{len(bad)} blob(s) named by {ledger} are missing or damaged, e.g. {bad[0]}")
        return head_of(conn), len(digests)
    finally:
        conn.close()


def empty_or_new(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise StoreError(f"{directory} is not empty: a backup goes into a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)


def run_backup(args: argparse.Namespace) -> int:
    source = Path(existing_db(args))
    dest = Path(args.dest).resolve()
    empty_or_new(dest)
    copy_ledger(source, dest / LEDGER_NAME)
    conn = connect(dest / LEDGER_NAME, readonly=True)
    try:
        digests = live_digests(conn)
    finally:
        conn.close()
    size, missing = copy_blobs(digests, jobs_dir(args) / BLOBS_NAME, dest / BLOBS_NAME)
    if missing:
        print(f"warning: {len(missing)} blob(s) named by events are missing from the source, e.g. {missing[0]}")
        print("(blobs lost before this backup: the copy keeps every event; pruned outputs are not counted here)")
    head, count = checked(dest / LEDGER_NAME, dest / BLOBS_NAME, frozenset(missing))
    print(f"backup of {source} in {dest}: {head_line(head)}; {count} blobs ({size} bytes); verified")
    return 0


def refuse_overwrite(target: Path, blobs: Path) -> None:
    present = [p for p in (target, *(Path(f"{target}{s}") for s in SIDE_FILES)) if p.exists()]
    if present:
        raise StoreError(f"{present[0]} exists: restore never writes over a ledger (move it away first)")
    if blobs.exists() and any(blobs.iterdir()):
        raise StoreError(f"{blobs} is not empty: restore into a place without blobs")


def run_restore(args: argparse.Namespace) -> int:
    if args.from_replica == (args.source is not None):
        raise StoreError("restore takes either SRC (a backup directory) or --from-replica")
    if args.at and not args.from_replica:
        raise StoreError("--at goes with --from-replica (a backup holds one point in time)")
    if args.from_replica:
        return run_restore_from_replica(args)
    source = Path(args.source).resolve()
    ledger = source / LEDGER_NAME
    if not ledger.is_file():
        raise StoreError(f"{source} holds no {LEDGER_NAME}: not a directory written by `gpuledger backup`")
    target = Path(args.db or load_settings(args.config).storage.database_path).resolve()
    blobs = jobs_dir(args) / BLOBS_NAME
    refuse_overwrite(target, blobs)
    checked(ledger, source / BLOBS_NAME)  # a damaged backup is refused before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(ledger, partial)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    if (source / BLOBS_NAME).is_dir():
        shutil.copytree(source / BLOBS_NAME, blobs, dirs_exist_ok=True)
    os.replace(partial, target)  # the ledger appears whole, after its blobs, or not at all
    head, count = checked(target, blobs)
    print(f"restored {target} from {source}: {head_line(head)}; {count} blobs; audit verify ok")
    return 0


def run_restore_from_replica(args: argparse.Namespace) -> int:
    from cli.replica_restore import restore_from_replica  # Litestream and asyncssh: only when asked

    settings = load_settings(args.config)
    target = Path(args.db or settings.storage.database_path).resolve()
    jobs = jobs_dir(args)
    refuse_overwrite(target, jobs / BLOBS_NAME)
    staged, missing = restore_from_replica(args, settings, target, jobs)
    try:
        checked(staged, jobs / BLOBS_NAME, frozenset(missing))
        os.replace(staged, target)  # the ledger appears whole, after its blobs, or not at all
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    head, count = checked(target, jobs / BLOBS_NAME, frozenset(missing))
    when = f" as of {args.at}" if args.at else ""
    print(f"restored {target} from the replica{when}: {head_line(head)}; {count} blobs; audit verify ok")
    return 0
