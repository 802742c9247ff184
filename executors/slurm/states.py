"""Slurm job states and what they mean to gpuledger (the table in docs/design.md).

The wrapper's status file decides the outcome whenever it exists (exit code, signal, timeout,
cancel: the same rules as on every executor). Slurm's state decides only when the job ended
without one: the wrapper never ran, or was killed with the allocation.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

# Still going: keep following. Anything else is terminal.
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
    }
)
STARTED = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "SIGNALING"})


class SlurmOutcome(NamedTuple):
    status: Literal["failed", "cancelled"]
    reason: str
    message: str


# Terminal Slurm state with no wrapper status file -> gpuledger outcome.
OUTCOMES: dict[str, SlurmOutcome] = {
    "CANCELLED": SlurmOutcome("cancelled", "cancelled", "cancelled in Slurm (scancel)"),
    "TIMEOUT": SlurmOutcome("failed", "timeout", "Slurm ended the job at its time limit"),
    "OUT_OF_MEMORY": SlurmOutcome("failed", "out_of_memory", "Slurm killed the job: out of memory"),
    "NODE_FAIL": SlurmOutcome("failed", "node_lost", "the Slurm node running the job failed"),
    "PREEMPTED": SlurmOutcome("failed", "preempted", "Slurm preempted the job"),
    "BOOT_FAIL": SlurmOutcome("failed", "dispatch_failed", "the Slurm node failed to boot"),
    "DEADLINE": SlurmOutcome("failed", "timeout", "Slurm ended the job at its deadline"),
    "FAILED": SlurmOutcome("failed", "dispatch_failed", "the batch script failed before the wrapper recorded an end"),
    "COMPLETED": SlurmOutcome("failed", "lost", "the batch script ended without the wrapper's exit status"),
}
GONE = SlurmOutcome("failed", "lost", "Slurm no longer knows the job and the wrapper left no exit status")


def outcome_of(state: str | None) -> SlurmOutcome:
    """``None``: Slurm has forgotten the job (past MinJobAge)."""
    if state is None:
        return GONE
    return OUTCOMES.get(state, SlurmOutcome("failed", "lost", f"Slurm state {state}"))


def pending_words(reason: str) -> str:
    """A pending job's reason, in the words the status API shows."""
    return f"queued in Slurm ({reason})" if reason and reason != "None" else "queued in Slurm"
