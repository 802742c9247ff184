"""The ``gpuledger`` command: one argparse tree, each subcommand in its own module."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from ledger.domain.errors import LedgerError

EXIT_ERROR = 2  # the command itself failed (bad arguments, server error, not found...)
VERSION = "0.1.0"  # the SDK's __version__ (tests/test_cli_commands.py checks they agree)

# Every subcommand: (name, the module whose register(subparsers) adds it, its one-line help), the
# researcher's first, then the admin's. Only the chosen command's module is imported (``serve`` then
# loads no SDK, rich or httpx); the others appear in ``--help`` from this table, which
# tests/test_cli_commands.py keeps equal to what the modules register.
COMMANDS = (
    ("login", "cli.login", "check your token with the server and store it for later commands"),
    ("whoami", "cli.login", "who your token says you are, and when it expires"),
    ("submit", "cli.submit", "submit a solution and follow it (exit code = the job's)"),
    ("wait", "cli.submit", "wait for a job to end (exit code = the job's)"),
    ("status", "cli.job", "a job's status, phase, queue position and start estimate"),
    ("results", "cli.job", "a job's results file, exit code and console output"),
    ("cancel", "cli.job", "cancel jobs: by id, or --all of yours (--status, --user)"),
    ("download", "cli.artifacts", "fetch a job's artifacts (outputs/ and artifacts: globs)"),
    ("logs", "cli.logs", "a job's stdout and stderr (labelled); -f follows them live"),
    ("jobs", "cli.listing", "your pending and running jobs (--all: finished ones too)"),
    ("nodes", "cli.listing", "the GPU nodes: state, current job, queue"),
    ("quota", "cli.quota", "your daily quotas: used, left, when they reset"),
    ("usage", "cli.usage", "GPU-hours held vs used, peak vs card memory (--user, --since)"),
    ("dashboard", "cli.dashboard", "live view: nodes, queue with reasons and ETAs, your jobs"),
    ("serve", "cli.serve", "run the server (default 0.0.0.0:8001)"),
    ("config", "cli.serve", "settings"),
    ("node", "cli.nodes_admin", "admins: list nodes, drain or undrain one"),
    ("token", "cli.tokens", "manage API tokens"),
    ("user", "cli.users", "a user's fair share: share, priority level, caps, usage"),
    ("users", "cli.users", "every user's fair-share account"),
    ("audit", "cli.audit", "check the ledger"),
    ("replay", "cli.audit", "the views as of a position or time"),
    ("events", "cli.audit", "ledger events, one per line"),
    ("backup", "cli.backup", "a consistent, verified copy of the ledger and its blobs"),
    ("restore", "cli.backup", "put a backup back, into a place with no ledger"),
    ("prune", "cli.prune", "remove the outputs of jobs that ended long ago (RETENTION_DAYS)"),
    ("scan", "cli.scan", "scan a Python file with the code scanner"),
    ("server-log", "cli.server_log", "tail the server's structured log file"),
    ("completion", "cli.completion", "print a shell completion script (bash, zsh or tcsh)"),
)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not an option (the top level
    has only ``-h`` and ``--version``, which take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(prog="gpuledger", description="GPU job queue server on an event ledger")
    parser.add_argument("--version", action="version", version=f"gpuledger {VERSION}")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of ``command``'s module; every other command is listed by name and help only."""
    parser, subparsers = _top_parser()
    owner = next((module for name, module, _ in COMMANDS if name == command), None)
    for name, module, summary in COMMANDS:
        if module != owner:
            subparsers.add_parser(name, help=summary, add_help=False)
        elif name not in subparsers.choices:  # the module's first command: it registers all of its own
            importlib.import_module(module).register(subparsers)
    return parser


def _reported() -> tuple[type[Exception], ...]:
    """The errors a command reports on one line; the SDK's only once a command has loaded the SDK
    (one that never did cannot raise them, and importing it would slow ``serve``'s start)."""
    if "gpuledger.errors" not in sys.modules:
        return (LedgerError, OSError, ValueError)
    from gpuledger.errors import GpuledgerError

    return (LedgerError, GpuledgerError, OSError, ValueError)


def _one_line(error: Exception) -> str:
    """What a failed command prints: the server's ``detail`` or the local problem, on one line."""
    if "gpuledger.errors" in sys.modules:
        return _sdk_line(error)
    return " ".join(str(error).split())


def _sdk_line(error: Exception) -> str:
    from gpuledger.errors import AuthError, ConnectionFailed, NotGpuledger, RateLimited

    if isinstance(error, RateLimited) and error.retry_after is not None:
        return f"{error.detail} (retry in {error.retry_after:g}s)"
    if isinstance(error, AuthError):
        return f"{error.detail} (set GPULEDGER_TOKEN or run gpuledger login)"
    if isinstance(error, ConnectionFailed) and not isinstance(error, NotGpuledger):  # that one names the fix
        return f"{error} (is the server running? set GPULEDGER_URL or run gpuledger login)"
    return " ".join(str(error).split())


def full_parser() -> argparse.ArgumentParser:
    """Every command's full parser (for shell completion): each module registers its own."""
    parser, subparsers = _top_parser()
    for module in dict.fromkeys(module for _, module, _ in COMMANDS):
        importlib.import_module(module).register(subparsers)
    return parser


def unknown_command(command: str | None) -> str | None:
    """A line for a command nobody registers, with the nearest one (argparse's own lists them all)."""
    names = [name for name, _, _ in COMMANDS]
    if command is None or command in names:
        return None
    close = difflib.get_close_matches(command, names, n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else f" (commands: {', '.join(names)})"
    return f"gpuledger: unknown command `{command}`{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if (problem := unknown_command(chosen_command(words))) is not None:
        print(problem, file=sys.stderr)
        return EXIT_ERROR
    args = build_parser(chosen_command(words)).parse_args(words)
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        if not isinstance(e, _reported()):
            raise
        if isinstance(e, BrokenPipeError):  # the reader (head, less) went away: not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"gpuledger: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
