"""``gpuledger prune [--days N | --before TIME] [--dry-run]``: retention of job outputs.

Appends one ``job.pruned`` per job through the ledger's normal write path (a running server sees them
within a second, as it sees ``token create``), then removes the blob files no job that stays names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import add_db_option, existing_db
from ledger.domain import clock
from ledger.domain.errors import LedgerError, StoreError
from ledger.store.backup import BLOBS_NAME
from ledger.store.pruning import leftover, plan, remove_blobs
from ledger.store.retention import DAY_US, prune_write
from ledger.store.settings import load_settings
from projections.live import open_store

ACTOR = "cli"
BATCH = 500  # jobs per transaction: a long prune never holds the writer for long


def register(subparsers: Any) -> None:
    prune = subparsers.add_parser("prune", help="remove the outputs of jobs that ended long ago (RETENTION_DAYS)")
    when = prune.add_mutually_exclusive_group()
    when.add_argument("--days", type=int, metavar="N", help="jobs ended more than N days ago (default RETENTION_DAYS)")
    when.add_argument("--before", metavar="TIME", help="jobs ended before this ISO 8601 time")
    prune.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    prune.add_argument("--jobs-dir", metavar="DIR", help="where the blobs are (default: the JOBS_DIR setting)")
    add_db_option(prune)
    prune.set_defaults(func=run_prune)


def cutoff_and_reason(args: argparse.Namespace, retention_days: int) -> tuple[int, str]:
    """The instant jobs must have ended before, and the reason each job.pruned records."""
    if args.before is not None:
        try:
            return clock.parse_iso(args.before), f"ended before {args.before}"
        except ValueError:
            raise StoreError(f"--before {args.before!r} is not an ISO 8601 time") from None
    days, source = (args.days, "prune --days") if args.days is not None else (retention_days, "RETENTION_DAYS")
    if days < 0:
        raise StoreError("--days must be 0 or more")
    if args.days is None and days == 0:
        raise StoreError("retention is off (RETENTION_DAYS = 0): pass --days N or --before TIME")
    return clock.now_us() - days * DAY_US, f"older than {days} days, per {source}"


def run_prune(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    cutoff_us, reason = cutoff_and_reason(args, settings.storage.retention_days)
    blobs = Path(args.jobs_dir or settings.storage.jobs_dir).resolve() / BLOBS_NAME
    store = open_store(existing_db(args))
    events = plan(store.conn, store.views.jobs, cutoff_us, reason=reason, by=ACTOR)
    planned = sum(event.bytes_freed for event in events)
    if args.dry_run:
        print(f"would prune {len(events)} job(s) ended before {clock.iso(cutoff_us)}: about {planned} bytes")
        return 0
    for start in range(0, len(events), BATCH):
        result = store.execute([prune_write(events[start : start + BATCH], by=ACTOR)])[0]
        if isinstance(result, LedgerError):
            raise result
    removed, freed = remove_blobs(blobs, leftover(store.conn, events))
    print(f"pruned {len(events)} job(s) ended before {clock.iso(cutoff_us)}: {removed} blob(s), {freed} bytes freed")
    return 0
