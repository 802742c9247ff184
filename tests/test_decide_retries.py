"""Given a job's past events, when an attempt ends, then it is retried (same job, next attempt) or finished."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_decide_jobs import DISPATCHED, QUEUED_JOB, STARTED, J, given

from executors.outcome import finished_event
from executors.protocol import ExitStatus
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobCancelRequested,
    JobDispatched,
    JobFinished,
    JobRequeued,
    JobRetried,
    JobStarted,
    JobSubmitted,
    RetryPolicy,
)
from ledger.domain.jobs import decide_cancel, decide_dispatch, decide_start
from ledger.domain.retries import decide_attempt_end, is_retryable, policy_for

RETRYING = JobSubmitted(
    job_id=J,
    user_id="alice",
    competition_id="comp",
    project_id="p",
    expected_time_s=60,
    code=Blob(digest="d" * 64, size=10),
    retry=RetryPolicy(retries=2, on=["dispatch_failed", "node_lost"], exit_codes=[75]),
)
RUNNING = (RETRYING, *QUEUED_JOB[1:], DISPATCHED, STARTED)
LOST = JobFinished(job_id=J, status="failed", reason="node_lost", attempt=1, message="node gone")
EXIT_75 = JobFinished(job_id=J, status="failed", reason="exit_nonzero", exit_code=75, attempt=1)
EXIT_3 = JobFinished(job_id=J, status="failed", reason="exit_nonzero", exit_code=3, attempt=1)


def retried(attempt: int, reason: str = "node_lost", **fields: object) -> JobRetried:
    return JobRetried(job_id=J, attempt=attempt, reason=reason, **fields)  # type: ignore[arg-type]


def test_node_lost_mid_job_is_retried_under_the_same_job_id() -> None:
    """A started attempt lost with its node, retries left: job.retried, and the job is queued for attempt 2."""
    events = decide_attempt_end(given(*RUNNING), LOST)
    assert events == [retried(1, message="node gone")]
    job = given(*RUNNING, *events)
    assert (job.job_id, job.status, job.phase, job.attempt, job.max_attempts) == (J, "pending", "queued", 1, 3)
    assert (job.node, job.started_at, job.retries_used) == (None, None, 1)
    assert [(a.attempt, a.node, a.reason, a.outcome) for a in job.history] == [
        (1, "gpu-node-0", "node_lost", "retried")
    ]
    assert decide_dispatch(job, node="gpu-node-1", slots=[0], workdir="/w")[0].attempt == 2  # type: ignore[attr-defined]


def test_second_attempt_starts_and_completes() -> None:
    """After a retry the next attempt is dispatched, started and finished as attempt 2."""
    job = given(*RUNNING, retried(1), JobDispatched(job_id=J, node="gpu-node-1", attempt=2, workdir="/w"))
    assert decide_start(job, attempt=2, pid=5, pgid=5)
    done = JobFinished(job_id=J, status="completed", reason="exit_zero", exit_code=0, attempt=2)
    after = given(*RUNNING, retried(1), JobDispatched(job_id=J, node="gpu-node-1", attempt=2, workdir="/w"),
                  JobStarted(job_id=J, node="gpu-node-1", attempt=2), done)  # fmt: skip
    assert decide_attempt_end(job, done) == [done]
    assert (after.status, after.attempt, after.node, len(after.history)) == ("completed", 2, "gpu-node-1", 1)
    assert after.attempt_key == f"{J}.2"


def test_chosen_exit_code_is_retried_and_others_are_not() -> None:
    """exit_codes: 75 is retried; exit 3 ends the job failed."""
    assert decide_attempt_end(given(*RUNNING), EXIT_75) == [retried(1, "exit_nonzero", exit_code=75)]
    assert decide_attempt_end(given(*RUNNING), EXIT_3) == [EXIT_3]


def test_retries_run_out() -> None:
    """With both retries used, the third lost attempt ends the job node_lost."""
    history: list[AnyEvent] = list(RUNNING)
    for attempt in (1, 2):
        history.append(retried(attempt))
        history.append(JobDispatched(job_id=J, node="gpu-node-1", attempt=attempt + 1, workdir="/w"))
        history.append(JobStarted(job_id=J, node="gpu-node-1", attempt=attempt + 1))
    job = given(*history)
    last = JobFinished(job_id=J, status="failed", reason="node_lost", attempt=3)
    assert (job.attempt, job.max_attempts, job.retries_left) == (3, 3, 0)
    assert decide_attempt_end(job, last) == [last]


def test_cancel_requested_is_never_retried() -> None:
    """A job being cancelled whose node is lost ends; it does not come back."""
    job = given(*RUNNING, JobCancelRequested(job_id=J, by="alice"))
    assert decide_attempt_end(job, LOST) == [LOST]


def test_cancel_while_queued_for_a_retry_ends_the_job() -> None:
    """Between attempts the job is queued: a cancel ends it at once."""
    events = decide_cancel(given(*RUNNING, retried(1)), by="alice")
    assert given(*RUNNING, retried(1), *events).status == "cancelled"


def test_without_a_policy_nothing_is_retried() -> None:
    """A job submitted without retries ends node_lost, as before retries existed."""
    plain = (QUEUED_JOB[0], *QUEUED_JOB[1:], DISPATCHED, STARTED)
    assert decide_attempt_end(given(*plain), LOST) == [LOST]
    assert given(*plain).max_attempts == 1


def test_unstarted_requeue_costs_no_retry() -> None:
    """An attempt requeued before it started adds an attempt, not a used retry."""
    job = given(RETRYING, *QUEUED_JOB[1:], DISPATCHED, JobRequeued(job_id=J, attempt=1, reason="node_lost"))
    assert (job.retries_used, job.max_attempts, job.history[0].outcome) == (0, 4, "requeued")


@pytest.mark.parametrize(("retries", "expected"), [(0, None), (1, RetryPolicy(retries=1, on=["a"], exit_codes=[2]))])
def test_policy_for(retries: int, expected: RetryPolicy | None) -> None:
    """No retries is no policy (the shape of older jobs); reasons and codes are kept sorted, once each."""
    assert policy_for(retries, ["a", "a"], [2, 2]) == expected


def test_a_job_the_wrapper_could_not_launch_is_sandbox_failed_and_retryable() -> None:
    """Exit 127 with no start (the sandbox could not be built) is the platform's failure, sandbox_failed;
    a wrapper gone without a status stays lost."""
    job = given(*RUNNING)
    blob = Blob(digest="0" * 64, size=0)
    at = datetime.now(UTC)
    setup = ExitStatus(exit_code=127, signal=None, ended_at=at, error="the sandbox could not be set up (see stderr)")
    gone = ExitStatus(exit_code=None, signal=None, ended_at=at, error="the job's wrapper is gone")
    ended = finished_event(job, setup, stdout=blob, stderr=blob, results=None, results_file=None)
    assert (ended.status, ended.reason) == ("failed", "sandbox_failed")
    assert finished_event(job, gone, stdout=blob, stderr=blob, results=None, results_file=None).reason == "lost"
    policy = RetryPolicy(retries=1, on=["sandbox_failed"])
    assert is_retryable(policy, ended)
