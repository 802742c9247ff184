"""Turning what the wrapper reported into the terminal event, and keeping the results file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from executors.protocol import ExitStatus
from ledger.domain.events import Blob, JobFinished
from ledger.domain.jobs import JobState


def finished_event(
    job: JobState,
    status: ExitStatus,
    *,
    stdout: Blob,
    stderr: Blob,
    results: Blob | None,
    results_file: str | None,
    results_unreadable: str | None = None,
) -> JobFinished:
    """Honest outcomes: a job the wrapper could not launch is ``sandbox_failed``; non-zero is failed with
    the real code; a signal death records the signal (and exit code 128 + signal, as a shell reports it);
    exit 0 with no results is still completed, and with results the job made unreadable
    (``results_unreadable``: why) too: the job ran, so it is charged, never refunded or retried."""
    exit_code = status.exit_code
    if status.signal is not None and exit_code is None:
        exit_code = 128 + status.signal
    state, reason = _ending(status, exit_code)
    if reason == "exit_zero" and results is None:
        reason = "results_missing" if results_unreadable is None else "results_unreadable"
    notes = [status.notice, status.error]
    if reason == "out_of_memory":
        notes.insert(0, memory_message(status.memory_limit_bytes))
    if results_unreadable is not None:
        notes.append(f"results file unreadable: {results_unreadable}")
    if not status.group_gone:
        notes = ["some process of the job survived SIGKILL (uninterruptible); the node may need attention"]
    message = "; ".join(note for note in notes if note) or None
    return JobFinished(
        job_id=job.job_id,
        status=state,
        reason=reason,
        exit_code=exit_code,
        signal=status.signal,
        attempt=job.attempt,
        stdout=stdout,
        stderr=stderr,
        results=results,
        results_file=results_file,
        message=message,
    )


def memory_message(limit: int | None) -> str:
    """Names the limit, so the user knows what to ask for (``memory:`` in the job config)."""
    where = f"its memory limit of {limit / (1 << 20):.0f} MiB" if limit else "its memory limit"
    return f"the job used more than {where} (its /tmp and /dev/shm included) and the kernel killed it"


def _ending(status: ExitStatus, exit_code: int | None) -> tuple[Literal["completed", "failed", "cancelled"], str]:
    """(state, reason) from what the wrapper recorded; the limits it enforced come before the signal
    it used to enforce them, and the cgroup's own OOM kill counter before any exit status."""
    if status.cancelled:
        return "cancelled", "cancelled"
    if status.started_at is None and status.exit_code == 127 and status.error is not None:
        # The wrapper could not launch the job (its sandbox could not be built, say): the platform's fault.
        return "failed", "sandbox_failed"
    if status.timed_out:
        return "failed", "timeout"
    if status.disk_limit:
        return "failed", "disk_limit"
    if status.output_limit:
        return "failed", "output_limit"
    if status.out_of_memory:  # even when the main process went on to exit 0 (a dead DataLoader worker)
        return "failed", "out_of_memory"
    if status.signal is not None:
        return "failed", "signal"
    if exit_code is None:
        return "failed", "lost"
    if exit_code == 0:
        return "completed", "exit_zero"
    return "failed", "exit_nonzero"


def save_results_file(results_dir: Path, job: JobState, data: bytes, at: datetime | None = None) -> Path:
    """``<user>_<competition>_<YYYYmmdd_HHMMSS>.jsonl``, made unique within a second by a suffix."""
    moment = (at or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe(job.user_id)}_{_safe(job.competition_id)}_{moment}"
    for n in range(10_000):
        candidate = results_dir / (f"{stem}.jsonl" if n == 0 else f"{stem}_{n}.jsonl")
        try:
            with candidate.open("xb") as handle:  # exclusive create: two jobs never share a file
                handle.write(data)
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free results file name for {stem}")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
