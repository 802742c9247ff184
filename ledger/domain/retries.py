"""Retries: an attempt that ends for a retryable reason, with retries left, puts the job back in the queue.

The policy is the job's own (``JobSubmitted.retry``, fixed at submit from the settings and its config),
so replaying the log decides every attempt the same way whatever the settings are today.
"""

from __future__ import annotations

from ledger.domain.events import AnyEvent, JobFinished, JobRetried, RetryPolicy
from ledger.domain.jobs import JobState, decide_finish

MAX_RETRIES = 5  # per job: a job that fails six times in a row needs a person, not a seventh try
RETRYABLE_REASONS = frozenset({"node_lost", "dispatch_failed", "sandbox_failed", "lost", "timeout", "signal"})


def is_retryable(policy: RetryPolicy, finished: JobFinished) -> bool:
    """A failed ending the policy names: by its reason, or by the job's own exit code."""
    if finished.status != "failed":
        return False
    if finished.reason in policy.on:
        return True
    return finished.reason == "exit_nonzero" and finished.exit_code in policy.exit_codes


def decide_attempt_end(job: JobState, finished: JobFinished) -> list[AnyEvent]:
    """The end of the current attempt: ``job.retried`` while the policy allows one, else ``job.finished``.

    A cancel requested meanwhile always ends the job: nobody wants a cancelled job to come back.
    """
    events = decide_finish(job, finished)
    policy = job.retry
    if policy is None or job.cancel_requested or job.retries_left <= 0 or not is_retryable(policy, finished):
        return events
    return [
        JobRetried(
            job_id=job.job_id,
            attempt=job.attempt,
            reason=finished.reason,
            exit_code=finished.exit_code,
            signal=finished.signal,
            message=finished.message,
            stdout=finished.stdout,
            stderr=finished.stderr,
        )
    ]


def policy_for(retries: int, on: list[str], exit_codes: list[int]) -> RetryPolicy | None:
    """The policy a job is submitted with (None when it has no retries: the shape older jobs have)."""
    if retries <= 0:
        return None
    return RetryPolicy(retries=retries, on=sorted(set(on)), exit_codes=sorted(set(exit_codes)))
