"""Options and parsing shared by the ledger-facing subcommands."""

from __future__ import annotations

import argparse

from ledger import clock
from ledger.settings import load_settings


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH", help="ledger file (default: the DATABASE_PATH setting)")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./gpuledger.toml if present)")


def db_path(args: argparse.Namespace) -> str:
    if getattr(args, "db", None):
        return str(args.db)
    return load_settings(getattr(args, "config", None)).database_path


def position_or_time(text: str) -> tuple[int | None, int | None]:
    """``--until``/``--since`` take a ledger position (digits) or an ISO-8601 time."""
    try:
        return clock.position_or_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
