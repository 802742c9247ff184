"""The GPU events' decide functions: an idle attempt flagged once, its summary, its end by the policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import AnyEvent, JobFinished, JobGpuIdle, JobGpuSummary, JobRequeued
from ledger.domain.gpu import GpuSample, GpuSummary
from ledger.domain.jobs import JobState, decide_finish

IDLE_REASON = "gpu_idle"  # the finish (cancel) or requeue reason of an attempt the idle policy took back


def decide_gpu_idle(
    job: JobState,
    *,
    attempt: int,
    action: Literal["warn", "cancel", "requeue"],
    minutes: float,
    below: float,
    samples: Sequence[GpuSample],
) -> list[AnyEvent]:
    """Flag the running attempt once; a flag for another attempt, or an ended job, is refused. A job
    requeued for idleness before is not requeued again (it would come back idle for ever): cancelled."""
    if action == "requeue" and any(past.reason == IDLE_REASON for past in job.history):
        action = "cancel"
    if job.is_terminal or job.attempt != attempt or job.started_at is None:
        raise InvalidTransition(f"job {job.job_id} attempt {attempt} is not running")
    if job.gpu_idle is not None:
        raise InvalidTransition(f"job {job.job_id} attempt {attempt} is already flagged idle")
    return [
        JobGpuIdle(
            job_id=job.job_id, attempt=attempt, action=action, minutes=minutes, below=below, samples=list(samples)
        )
    ]


def gpu_summary_events(
    job: JobState, summary: GpuSummary | None, attempt: int, idle_charge_factor: float = 1.0
) -> list[AnyEvent]:
    """The summary recorded with the attempt's end: none without telemetry, or for an ended job."""
    if summary is None or job.is_terminal or job.attempt != attempt:
        return []
    return [JobGpuSummary(job_id=job.job_id, attempt=attempt, summary=summary, idle_charge_factor=idle_charge_factor)]


def idle_ending(job: JobState, finished: JobFinished) -> JobFinished | list[AnyEvent]:
    """How an attempt the policy killed ends: cancelled with reason ``gpu_idle``, or back in the queue.
    Any other ending (it exited first, a user cancel) is left as it is."""
    if job.gpu_idle not in ("cancel", "requeue") or finished.reason != "cancelled" or job.cancel_requested:
        return finished
    if job.gpu_idle == "requeue":
        decide_finish(job, finished)  # the same guards as any end: an open job, its current attempt
        return [JobRequeued(job_id=job.job_id, attempt=job.attempt, reason=IDLE_REASON)]
    return JobFinished(
        job_id=finished.job_id,
        status="cancelled",
        reason=IDLE_REASON,
        exit_code=finished.exit_code,
        signal=finished.signal,
        attempt=finished.attempt,
        stdout=finished.stdout,
        stderr=finished.stderr,
        message=job.message,
    )
