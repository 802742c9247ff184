"""Options and parsing shared by the ledger-facing subcommands."""

from __future__ import annotations

import argparse

from ledger.clock import parse_iso
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
    if text.isdigit():
        return int(text), None
    try:
        return None, parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a position or an ISO-8601 time: {text!r}") from None
