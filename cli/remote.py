"""What the researcher's commands share: server options, the SDK client, JSON output, exit codes.

Exit codes of the waiting commands (``submit``, ``wait``), documented in the user guide:
the job's own exit code when it ran and ended; these when it did not end on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from cli.terminal import escape_controls
from gpuledger import AsyncClient, Client, JobStatus
from gpuledger.models import to_builtins
from ledger.store.reasons import finish_words

EXIT_FAILED_NO_CODE = 122  # failed before or without an exit code (rejected by the scanner, dispatch failed)
EXIT_NODE_LOST = 123  # the node became unreachable for good while the job ran
EXIT_TIMEOUT = 124  # killed for running over its time limit (as GNU timeout)
EXIT_CANCELLED = 125  # cancelled
EXIT_DETACHED = 130  # Ctrl+C: the client let go, the job goes on

EXPIRY_WARNING = timedelta(days=3)  # a token this close to its end is warned of, once per command
_warned: list[str] = []  # this process has warned (a list, not a global flag to rebind)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="server URL (default: GPULEDGER_URL, then the login file)")
    parser.add_argument("--token", help="API token (default: GPULEDGER_TOKEN, then the login file)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def client_from(args: argparse.Namespace) -> Client:
    return Client(args.url, args.token, rate_limit_wait=0.0, on_token_expiry=warn_if_expiring)


def async_client_from(args: argparse.Namespace) -> AsyncClient:
    return AsyncClient(args.url, args.token, rate_limit_wait=0.0, on_token_expiry=warn_if_expiring)


def until(expires_at: str | None, now: datetime | None = None) -> str:
    """``2027-01-06 12:00 UTC (in 29 days)``: when a token expires, for a person."""
    if not expires_at:
        return "never"
    when = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    left = when - (now or datetime.now(UTC))
    hours = int(left.total_seconds() // 3600)
    ahead = "expired" if hours < 0 else f"in {hours} hours" if hours < 48 else f"in {hours // 24} days"
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ahead})"


def warn_if_expiring(expires_at: str) -> None:
    """Once per command, on stderr: the token ends within ``EXPIRY_WARNING`` (every answer says when)."""
    if _warned or datetime.fromisoformat(expires_at.replace("Z", "+00:00")) - datetime.now(UTC) > EXPIRY_WARNING:
        return
    _warned.append(expires_at)
    err.print(
        f"gpuledger: warning: your token expires {until(expires_at)}; ask an admin for a new one "
        "(gpuledger token create), then gpuledger login",
        markup=False,
    )


def print_json(value: Any) -> None:
    json.dump(to_builtins(value), sys.stdout, indent=2)
    sys.stdout.write("\n")


def exit_code_of(status: JobStatus) -> int:
    """What a waiting command exits with for a job that ended (see the table in the module docstring)."""
    if status.status == "completed":
        return 0
    if status.status == "cancelled":
        return EXIT_CANCELLED
    if status.finish_reason == "timeout":
        return EXIT_TIMEOUT
    if status.finish_reason == "node_lost":
        return EXIT_NODE_LOST
    if status.exit_code:
        return status.exit_code & 0xFF
    return EXIT_FAILED_NO_CODE


def reason_words(status: JobStatus) -> str:
    """Why a finished job ended, in words (the codes stay in ``--json``): the server's, which knows the
    job's limits, else made here from the codes (an older server)."""
    if status.finish_reason_text:
        return status.finish_reason_text
    words = finish_words(
        status.finish_reason,
        exit_code=status.exit_code,
        signal=status.signal,
        expected_time_s=status.expected_time,
        cancelled_by=status.cancelled_by,
    )
    return words or ""


def status_line(status: JobStatus) -> str:
    words = reason_words(status)
    parts = [f"job {status.job_id} {words if words.startswith(status.status) else status.status}"]
    if words and not words.startswith((status.status, "exit code")):  # "cancelled by alice" says it all
        parts.append(f"({words})")
    if status.exit_code is not None:
        parts.append(f"exit code {status.exit_code}")
    if status.node:
        parts.append(f"on {status.node}")
    return " ".join(parts)


def attempt_note(status: JobStatus) -> str:
    """ ", attempt 2 of 3" for a job that may be retried (nothing for a job with one attempt)."""
    if status.max_attempts <= 1 or status.attempt < 1:
        return ""
    return f", attempt {status.attempt} of {status.max_attempts}"


def phase_line(status: JobStatus) -> str:
    """One line saying where a job is: queued at position n (start estimate), or running on a node."""
    return escape_controls(_phase(status) + attempt_note(status))


def _phase(status: JobStatus) -> str:
    if status.status == "pending":
        text = f"{status.phase or 'pending'}"
        if status.queue_position is not None:
            text += f", position {status.queue_position}"
        if status.reason:
            text += f": {status.reason}"
        if status.estimated_start_at:
            text += f" (estimated start {status.estimated_start_at[:19]}Z)"
        if status.fairshare is not None:  # why it stands there (docs/user-guide.md)
            text += f" [fair share {status.fairshare:.3f}, age {status.age or 0:.3f}, priority {status.priority}]"
        return text
    if status.status == "running":
        return f"running on {status.node or 'a node'} since {(status.started_at or '')[:19]}Z"
    return status_line(status)


def detached_hint(job_id: str) -> str:
    return (
        f"detached; job {job_id} goes on. Reattach with: gpuledger logs {job_id} -f  "
        f"(or gpuledger wait {job_id}); stop it with: gpuledger cancel {job_id}"
    )
