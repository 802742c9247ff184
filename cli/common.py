"""Options and parsing shared by the ledger-facing subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger.domain import clock
from ledger.domain.errors import StoreError
from ledger.store.settings import load_settings


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH", help="ledger file (default: the DATABASE_PATH setting)")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./gpuledger.toml if present)")


def db_path(args: argparse.Namespace) -> str:
    if getattr(args, "db", None):
        return str(args.db)
    return load_settings(getattr(args, "config", None)).storage.database_path


def existing_db(args: argparse.Namespace) -> str:
    """The ledger a read-only command reads: it must exist (never create an empty one by mistake)."""
    path = Path(db_path(args)).resolve()
    if not path.exists():
        raise StoreError(f"no ledger at {path}: run this where the server runs, or pass --db PATH or --config FILE")
    return str(path)


def db_for_write(args: argparse.Namespace) -> str:
    """The ledger a writing command appends to; creating it is allowed, and said (with the absolute path)."""
    path = Path(db_path(args)).resolve()
    if not path.exists():
        print(f"gpuledger: creating a new ledger at {path}", file=sys.stderr)
    return str(path)


def position_or_time(text: str) -> tuple[int | None, int | None]:
    """``--until``/``--since`` take a ledger position (digits) or an ISO-8601 time."""
    try:
        return clock.position_or_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
