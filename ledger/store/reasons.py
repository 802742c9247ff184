"""Why a job ended, in words a person reads: one mapping from the ledger's reason codes to phrases.

The API keeps the codes (scripts and clients match on them); the CLI and the web page show these
words. It lives in ``ledger`` so that every layer above (the API for the web page, the CLI) imports
the same function; it is pure and imports nothing of ours.
"""

from __future__ import annotations

import signal as signals

# Codes whose words need nothing from the job; the rest are built in ``finish_words``.
FIXED: dict[str, str] = {
    "exit_zero": "completed",
    "completed": "completed",
    "results_missing": "no results file",
    "results_unreadable": "results file unreadable",
    "lost": "lost: the node never reported how the job ended",
    "node_lost": "its node was lost",
    "dispatch_failed": "could not be started on its node",
    "sandbox_failed": "the sandbox could not be set up",
    "rejected": "rejected by the code check",
    "preempted": "preempted by Slurm",
    "disk_limit": "stopped: disk limit reached",
    "output_limit": "stopped: too much output",
    "env_setup_failed": "environment setup failed",
    "dependency_never_satisfied": "a job it depends on never succeeded",
    "gpu_idle": "stopped: its GPU stayed idle",
}


def duration_words(seconds: float) -> str:
    """``2h``, ``1h30m``, ``90s`` -> ``1m30s``: the largest units, no zero parts."""
    left = round(seconds)
    if left <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def size_words(size: int) -> str:
    """Binary units, as memory limits are given: ``8 GiB``, ``256 MiB``, ``1.5 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def signal_words(number: int) -> str:
    try:
        return f"signal {number} ({signals.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def finish_words(
    reason: str | None,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    expected_time_s: int | None = None,
    cancelled_by: str | None = None,
    memory_limit_bytes: int | None = None,
) -> str | None:
    """The phrase for a finished job's reason code (``None`` for a job that has not ended).

    Unknown codes (a newer server's) read as their words, underscores made spaces."""
    if reason is None:
        return None
    if reason == "exit_nonzero":
        return f"exit code {exit_code}" if exit_code is not None else "failed"
    if reason == "cancelled":
        return f"cancelled by {cancelled_by}" if cancelled_by else "cancelled"
    if reason == "timeout":
        return f"timed out after {duration_words(expected_time_s)}" if expected_time_s else "timed out"
    if reason == "signal":
        return f"killed by {signal_words(signal)}" if signal is not None else "killed by a signal"
    if reason == "out_of_memory":
        limit = f" (limit {size_words(memory_limit_bytes)})" if memory_limit_bytes else ""
        return f"killed: out of memory{limit}"
    return FIXED.get(reason, reason.replace("_", " "))
