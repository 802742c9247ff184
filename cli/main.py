"""The ``gpuledger`` command: one argparse tree, each subcommand in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from cli.remote import EXIT_ERROR
from gpuledger import AuthError, ConnectionFailed, GpuledgerError, RateLimited, __version__
from ledger.errors import LedgerError

# Modules that add subcommands, each with register(subparsers): the researcher's first, then the admin's.
COMMAND_MODULES = (
    "cli.login",
    "cli.submit",
    "cli.job",
    "cli.listing",
    "cli.quota",
    "cli.dashboard",
    "cli.serve",
    "cli.tokens",
    "cli.users",
    "cli.audit",
    "cli.scan",
    "cli.server_log",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuledger", description="GPU job queue server on an event ledger")
    parser.add_argument("--version", action="version", version=f"gpuledger {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _one_line(error: Exception) -> str:
    """What a failed command prints: the server's ``detail`` or the local problem, on one line."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return f"{error.detail} (retry in {error.retry_after:g}s)"
    if isinstance(error, AuthError):
        return f"{error.detail} (set GPULEDGER_TOKEN or run gpuledger login)"
    if isinstance(error, ConnectionFailed):
        return f"{error} (is the server running? set GPULEDGER_URL or run gpuledger login)"
    return " ".join(str(error).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (LedgerError, GpuledgerError, OSError, ValueError) as e:
        if isinstance(e, BrokenPipeError):  # the reader (head, less) went away: not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"gpuledger: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
