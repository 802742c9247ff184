"""Given past job events, when a decide function runs, then these new events (or this refusal)."""

from __future__ import annotations

import pytest

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import (
    AnyEvent,
    Blob,
    Finding,
    JobCancelRequested,
    JobDispatched,
    JobFinished,
    JobHandedOff,
    JobQueued,
    JobRequeued,
    JobScanned,
    JobStarted,
    JobSubmitted,
)
from ledger.domain.jobs import (
    JobState,
    decide_cancel,
    decide_dispatch,
    decide_finish,
    decide_hand_off,
    decide_queue,
    decide_requeue,
    decide_scan,
    decide_start,
    evolve_job,
)

J = "j1"
SUBMITTED = JobSubmitted(
    job_id=J,
    user_id="alice",
    competition_id="comp",
    project_id="p",
    expected_time_s=60,
    code=Blob(digest="d" * 64, size=10),
)
APPROVED = JobScanned(job_id=J, verdict="approved")
QUEUED = JobQueued(job_id=J)
DISPATCHED = JobDispatched(job_id=J, node="gpu-node-0", attempt=1, workdir="/w/j1")
STARTED = JobStarted(job_id=J, node="gpu-node-0", attempt=1, pid=10, pgid=10)
CANCEL_REQUESTED = JobCancelRequested(job_id=J, by="alice")
COMPLETED = JobFinished(job_id=J, status="completed", reason="exit_zero", exit_code=0, attempt=1)
FAILED = JobFinished(job_id=J, status="failed", reason="exit_nonzero", exit_code=3, attempt=1)
CANCELLED = JobFinished(job_id=J, status="cancelled", reason="cancelled", attempt=1)
QUEUED_JOB = (SUBMITTED, APPROVED, QUEUED)
DISPATCHED_JOB = (*QUEUED_JOB, DISPATCHED)
RUNNING_JOB = (*DISPATCHED_JOB, STARTED)
TERMINAL_HISTORIES = {
    "completed": (*RUNNING_JOB, COMPLETED),
    "failed": (*RUNNING_JOB, FAILED),
    "cancelled": (*QUEUED_JOB, CANCEL_REQUESTED, JobFinished(job_id=J, status="cancelled", reason="cancelled")),
}


def given(*events: AnyEvent) -> JobState:
    """The job state folded from ``events`` (positions and times 1, 2, 3, ...)."""
    state = None
    for index, event in enumerate(events, start=1):
        state = evolve_job(state, event, position=index, at=index * 1_000_000)
    assert state is not None
    return state


TERMINAL_COMMANDS = {
    "scan": lambda job: decide_scan(job, APPROVED),
    "queue": lambda job: decide_queue(job),
    "dispatch": lambda job: decide_dispatch(job, node="gpu-node-1", slots=[0], workdir="/w"),
    "start": lambda job: decide_start(job, attempt=1, pid=1, pgid=1),
    "cancel": lambda job: decide_cancel(job, by="alice"),
    "requeue": lambda job: decide_requeue(job, attempt=1, reason="node_lost"),
    "finish": lambda job: decide_finish(job, COMPLETED),
}


@pytest.mark.parametrize("status", sorted(TERMINAL_HISTORIES))
@pytest.mark.parametrize("command", sorted(TERMINAL_COMMANDS))
def test_terminal_job_refuses_every_command(status: str, command: str) -> None:
    """A completed, failed or cancelled job is final: every command is refused with 'Job already <status>'."""
    job = given(*TERMINAL_HISTORIES[status])
    assert job.status == status
    with pytest.raises(InvalidTransition, match=f"^Job already {status}$"):
        TERMINAL_COMMANDS[command](job)


def test_scan_approves_submitted_job() -> None:
    """A verdict for a freshly submitted job is recorded as it is."""
    assert decide_scan(given(SUBMITTED), APPROVED) == [APPROVED]


def test_scan_verdict_after_pending_review() -> None:
    """A job waiting on an LLM review accepts the review's verdict."""
    verdict = JobScanned(job_id=J, verdict="warned", scanner="llm", model="m")
    assert decide_scan(given(SUBMITTED, JobScanned(job_id=J, verdict="pending", scanner="llm")), verdict) == [verdict]


def test_scan_rejection_ends_job_failed_rejected() -> None:
    """A rejecting verdict ends the job at once: failed, reason rejected, the findings in the message."""
    finding = Finding(rule="os.system", line=3, message="process execution", severity="critical")
    verdict = JobScanned(job_id=J, verdict="rejected", findings=[finding])
    events = decide_scan(given(SUBMITTED), verdict)
    assert events[0] == verdict
    assert events[1] == JobFinished(
        job_id=J,
        status="failed",
        reason="rejected",
        message="Code security check failed: line 3: process execution [os.system]",
    )
    assert given(SUBMITTED, *events).status == "failed"


def test_scan_of_queued_job_refused() -> None:
    """Once queued, a job cannot be scanned again."""
    with pytest.raises(InvalidTransition, match="already scanned"):
        decide_scan(given(*QUEUED_JOB), APPROVED)


def test_queue_after_approval() -> None:
    """An approved job is queued with the given priority and reason."""
    assert decide_queue(given(SUBMITTED, APPROVED), priority=2, reason="r") == [
        JobQueued(job_id=J, priority=2, reason="r")
    ]


def test_queue_while_review_pending_refused() -> None:
    """A job whose LLM review is still pending cannot be queued."""
    with pytest.raises(InvalidTransition, match="cannot be queued"):
        decide_queue(given(SUBMITTED, JobScanned(job_id=J, verdict="pending", scanner="llm")))


def test_queue_twice_refused() -> None:
    """A job already in the queue cannot be queued again."""
    with pytest.raises(InvalidTransition, match="cannot be queued"):
        decide_queue(given(*QUEUED_JOB))


def test_dispatch_queued_job_is_attempt_one() -> None:
    """The first dispatch of a queued job is attempt 1 on the chosen node and slot."""
    assert decide_dispatch(given(*QUEUED_JOB), node="gpu-node-1", slots=[1], workdir="/w") == [
        JobDispatched(job_id=J, node="gpu-node-1", slot=1, attempt=1, workdir="/w")
    ]


@pytest.mark.parametrize("history", [(SUBMITTED,), (SUBMITTED, APPROVED), DISPATCHED_JOB, RUNNING_JOB])
def test_dispatch_only_from_queued(history: tuple[AnyEvent, ...]) -> None:
    """A job that is not queued (not yet, or already dispatched or running) cannot be dispatched."""
    with pytest.raises(InvalidTransition, match="is not queued"):
        decide_dispatch(given(*history), node="gpu-node-1", slots=[0], workdir="/w")


def test_dispatch_after_requeue_is_next_attempt() -> None:
    """After a requeue the next dispatch is attempt 2."""
    job = given(*DISPATCHED_JOB, JobRequeued(job_id=J, attempt=1, reason="node_lost"))
    assert decide_dispatch(job, node="gpu-node-1", slots=[0], workdir="/w")[0].attempt == 2


def test_hand_off_records_the_executor_kind_that_took_it() -> None:
    """A hand-off names the executor whose own scheduler took the job, not one fixed scheduler."""
    events = decide_hand_off(given(*DISPATCHED_JOB), attempt=1, scheduler="kubernetes", scheduler_id="uid-1")
    assert events == [JobHandedOff(job_id=J, attempt=1, scheduler="kubernetes", scheduler_id="uid-1")]


def test_start_current_attempt() -> None:
    """The wrapper of the current attempt starts the job on its node."""
    assert decide_start(given(*DISPATCHED_JOB), attempt=1, pid=7, pgid=7, started_at_node="t") == [
        JobStarted(job_id=J, node="gpu-node-0", attempt=1, pid=7, pgid=7, started_at_node="t")
    ]


def test_start_of_old_attempt_refused() -> None:
    """A start reported for an attempt that is not the current one is refused."""
    job = given(
        *DISPATCHED_JOB,
        JobRequeued(job_id=J, attempt=1, reason="node_lost"),
        QUEUED,
        JobDispatched(job_id=J, node="gpu-node-1", attempt=2),
    )
    with pytest.raises(InvalidTransition, match="attempt 1 cannot start"):
        decide_start(job, attempt=1, pid=1, pgid=1)


@pytest.mark.parametrize("history", [QUEUED_JOB, RUNNING_JOB])
def test_start_needs_unstarted_dispatch(history: tuple[AnyEvent, ...]) -> None:
    """A job that is only queued, or already running, cannot start."""
    with pytest.raises(InvalidTransition, match="cannot start"):
        decide_start(given(*history), attempt=1, pid=1, pgid=1)


def test_start_after_cancel_request_runs_into_cancelling() -> None:
    """A dispatched job whose cancel was requested may still report its start; it is then cancelling."""
    job = given(*DISPATCHED_JOB, CANCEL_REQUESTED)
    events = decide_start(job, attempt=1, pid=1, pgid=1)
    assert given(*DISPATCHED_JOB, CANCEL_REQUESTED, *events).phase == "cancelling"


@pytest.mark.parametrize("history", [(SUBMITTED,), (SUBMITTED, APPROVED), QUEUED_JOB])
def test_cancel_pending_job_ends_it_at_once(history: tuple[AnyEvent, ...]) -> None:
    """Cancelling a job no runner owns yet records the request and ends it cancelled."""
    events = decide_cancel(given(*history), by="alice", reason="changed my mind")
    assert events == [
        JobCancelRequested(job_id=J, by="alice", reason="changed my mind"),
        JobFinished(job_id=J, status="cancelled", reason="cancelled", attempt=0, message="changed my mind"),
    ]


@pytest.mark.parametrize("history", [DISPATCHED_JOB, RUNNING_JOB])
def test_cancel_owned_job_is_only_a_request(history: tuple[AnyEvent, ...]) -> None:
    """Cancelling a dispatched or running job only asks its runner; the job is not finished yet."""
    events = decide_cancel(given(*history), by="admin")
    assert events == [JobCancelRequested(job_id=J, by="admin")]
    after = given(*history, *events)
    assert (after.phase, after.is_terminal) == ("cancelling", False)


def test_cancel_twice_while_running_is_refused() -> None:
    """A second cancel of a job already being cancelled is refused (409 at the API) and adds no event."""
    with pytest.raises(InvalidTransition, match="Job already cancelling"):
        decide_cancel(given(*RUNNING_JOB, CANCEL_REQUESTED), by="alice")


def test_requeue_unstarted_attempt() -> None:
    """A dispatched attempt that never started goes back to the queue."""
    events = decide_requeue(given(*DISPATCHED_JOB), attempt=1, reason="node_lost")
    assert events == [JobRequeued(job_id=J, attempt=1, reason="node_lost")]
    assert given(*DISPATCHED_JOB, *events).phase == "queued"


@pytest.mark.parametrize("history", [RUNNING_JOB, (*RUNNING_JOB, CANCEL_REQUESTED)])
def test_requeue_of_started_attempt_refused(history: tuple[AnyEvent, ...]) -> None:
    """A running (or cancelling) job is never requeued: it could run twice."""
    with pytest.raises(InvalidTransition, match="cannot be requeued"):
        decide_requeue(given(*history), attempt=1, reason="node_lost")


@pytest.mark.parametrize("history", [QUEUED_JOB, (SUBMITTED,)])
def test_requeue_of_undispatched_job_refused(history: tuple[AnyEvent, ...]) -> None:
    """Only a dispatched attempt can be requeued."""
    with pytest.raises(InvalidTransition, match="cannot be requeued"):
        decide_requeue(given(*history), attempt=1, reason="node_lost")


def test_requeue_of_other_attempt_refused() -> None:
    """Requeueing names the current attempt; another one is refused."""
    with pytest.raises(InvalidTransition, match="attempt 2 cannot be requeued"):
        decide_requeue(given(*DISPATCHED_JOB), attempt=2, reason="node_lost")


def test_requeue_of_cancelled_unstarted_attempt_ends_it() -> None:
    """An unstarted attempt whose cancel was requested ends cancelled instead of going back to the queue."""
    events = decide_requeue(given(*DISPATCHED_JOB, CANCEL_REQUESTED), attempt=1, reason="node_lost")
    assert events == [JobFinished(job_id=J, status="cancelled", reason="cancelled", attempt=1)]


@pytest.mark.parametrize("finished", [COMPLETED, FAILED, CANCELLED])
def test_finish_current_attempt(finished: JobFinished) -> None:
    """The runner's terminal event for the current attempt is recorded as it is."""
    events = decide_finish(given(*RUNNING_JOB), finished)
    assert events == [finished]
    assert given(*RUNNING_JOB, *events).status == finished.status


def test_finish_of_other_attempt_refused() -> None:
    """A late outcome of an abandoned attempt cannot finish the job."""
    finished = JobFinished(job_id=J, status="completed", reason="exit_zero", exit_code=0, attempt=2)
    with pytest.raises(InvalidTransition, match="attempt 2 is not the current one"):
        decide_finish(given(*RUNNING_JOB), finished)
