"""The job state machine: ``evolve_job`` folds a job's events, the ``decide_*`` functions guard SPEC §3.

Everything here is pure: no clock, no I/O. Times come from the events' envelopes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ledger.domain.attempts import Attempt, attempt_key
from ledger.domain.errors import InvalidTransition
from ledger.domain.events import (
    After,
    AnyEvent,
    Artifact,
    Blob,
    Finding,
    JobArtifactsPruned,
    JobArtifactsStored,
    JobCancelRequested,
    JobDependenciesMet,
    JobDispatched,
    JobEnvFailed,
    JobEnvReady,
    JobEvent,
    JobFinished,
    JobGpuIdle,
    JobGpuSummary,
    JobHandedOff,
    JobPruned,
    JobQueued,
    JobRequeued,
    JobRetried,
    JobScanned,
    JobStarted,
    JobSubmitted,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyIdleFailed,
    NotifyRequested,
    ProjectFile,
    RetryPolicy,
)
from ledger.domain.gpu import GpuSummary, idle_message

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
Phase = Literal["submitted", "scanning", "queued", "dispatched", "running", "cancelling", "finished"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class JobState(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Everything known about one job, folded from its stream."""

    job_id: str
    user_id: str
    competition_id: str
    project_id: str
    expected_time_s: int
    code: Blob
    position: int
    created_at: int
    version: int = 1
    token_id: str | None = None
    status: Status = "pending"
    phase: Phase = "submitted"
    priority: int = 0
    asked_priority: int | None = None  # the level the job asked for (None: its user's level)
    scan_verdict: str | None = None
    findings: list[Finding] = []
    node: str | None = None
    slot: int | None = None
    gpus: int = 1
    memory: int | None = None  # bytes the job asked for (None: its slots' part of the node's memory)
    slots: list[int] = []  # the GPU slots held on ``node`` (``slot`` is the first of them)
    gpus_held: int | None = None  # the current attempt's GPUs: 0 on a node without GPUs; None: ``gpus``
    scheduler_id: str | None = None  # the current attempt's id in an executor's own scheduler (job.handed_off)
    attempt: int = 0
    workdir: str | None = None
    queued_at: int | None = None
    queued_position: int | None = None  # ledger position of the event that last queued it: the queue's order
    dispatched_at: int | None = None
    dispatch_position: int | None = None  # ledger position of the dispatch: orders a node's jobs
    started_at: int | None = None
    completed_at: int | None = None
    pgid: int | None = None
    cancel_requested: bool = False
    cancelled_by: str | None = None  # who asked for the cancel (the words of a cancelled job's reason)
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout: Blob | None = None
    stderr: Blob | None = None
    results: Blob | None = None
    results_file: str | None = None
    message: str | None = None
    retry: RetryPolicy | None = None  # the job's retry policy, fixed at submit
    retries_used: int = 0
    history: list[Attempt] = []  # the attempts before the current one, oldest first
    pruned_at: int | None = None  # when retention removed the job's output blobs (job.pruned)
    pruned_reason: str | None = None
    notify: list[str] = []  # targets told when the job ends (notify.requested)
    notified: list[int] = []  # indices in ``notify`` with a recorded outcome (notify.delivered / notify.failed)
    # (attempt, index in ``notify``) told of that attempt's job.gpu_idle (notify.gpu_idle_delivered / _failed)
    idle_notified: list[tuple[int, int]] = []
    gpu: GpuSummary | None = None  # the last ended attempt's GPU use (job.gpu_summary); None: no telemetry
    gpu_idle: str | None = None  # the current attempt was found idle: the policy's action (job.gpu_idle)
    array_id: str | None = None  # a task of this array (ledger.domain.arrays)
    array_index: int | None = None
    array_width: int = 0
    params: dict[str, Any] | None = None  # a sweep task's parameters
    project: Blob | None = None  # a project directory's archive (None: the single file ``code``)
    project_files: list[ProjectFile] = []
    entrypoint: str | None = None
    args: list[str] = []
    artifact_globs: list[str] = []
    resume_from: str | None = None
    artifacts: list[Artifact] = []  # job.artifacts_stored
    artifacts_skipped: list[str] = []
    artifacts_pruned_at: int | None = None
    after: After | None = None  # its dependencies (ledger.domain.dependencies)
    dependencies_met: bool = False  # job.dependencies_met: it no longer waits
    env_ready: JobEnvReady | None = None  # the last attempt's declared environment, once ready
    setup_from: int | None = None  # when the current attempt's environment set-up began (job.env_ready/_failed)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def held_slots(self) -> list[int]:
        """The slots this job holds on its node (a job recorded before multi-GPU jobs has ``slot`` only)."""
        if self.slots:
            return self.slots
        return [] if self.slot is None else [self.slot]

    @property
    def slots_needed(self) -> int:
        """Slots the job takes on its node: one per GPU, and one for a CPU-only job (``gpus: 0``)."""
        return max(1, self.gpus)

    @property
    def charged_gpus(self) -> int:
        """The GPUs charged for the current attempt's run time (fair share, quotas, usage): those it held."""
        return self.gpus if self.gpus_held is None else self.gpus_held

    @property
    def charged_from(self) -> int | None:
        """When the current attempt's charged time began: its environment's set-up, else its start (None:
        neither yet). Set-up is charged like the run it prepares (fair share, GPU-hour quota, tallies)."""
        return self.setup_from if self.setup_from is not None else self.started_at

    @property
    def is_active(self) -> bool:
        return self.status in ("pending", "running")

    @property
    def max_attempts(self) -> int:
        """The attempts this job may have: one, its retries, and every attempt requeued before it started
        (a node lost before the job ran costs no retry)."""
        requeued = sum(1 for past in self.history if past.outcome == "requeued")
        return 1 + (self.retry.retries if self.retry else 0) + requeued

    @property
    def retries_left(self) -> int:
        return (self.retry.retries if self.retry else 0) - self.retries_used

    @property
    def first_started_at(self) -> int | None:
        """When the job first ran (its queue wait ends there, whatever attempts followed)."""
        for past in self.history:
            if past.started_at is not None:
                return past.started_at
        return self.started_at

    def waited_us(self, now: int) -> int:
        """The job's wait, the one definition of waiting time: from its submit until it first ran (or
        ended, never having run), or until ``now`` while it has done neither. The runs of a retried
        job are not waiting. (The fair-share age is another measure: it counts from the last
        ``job.queued``, so a retried job's age starts anew.)"""
        return (self.first_started_at or self.completed_at or now) - self.created_at

    @property
    def attempt_key(self) -> str:
        """The current attempt's name on disk: the job id for the first, ``<job id>.<n>`` after it."""
        return attempt_key(self.job_id, self.attempt)


def evolve_job(state: JobState | None, event: JobEvent, *, position: int, at: int) -> JobState:
    """Fold one event into the job's state (the event was already accepted by a decide function)."""
    if state is None:
        assert isinstance(event, JobSubmitted), f"{type(event).__name__} before job.submitted"
        return JobState(
            job_id=event.job_id,
            user_id=event.user_id,
            competition_id=event.competition_id,
            project_id=event.project_id,
            expected_time_s=event.expected_time_s,
            code=event.code,
            position=position,
            created_at=at,
            token_id=event.token_id,
            gpus=event.gpus,
            retry=event.retry,
            asked_priority=event.asked_priority,
            memory=event.memory,
            array_id=event.array_id,
            array_index=event.array_index,
            array_width=event.array_width,
            params=event.params,
            project=event.project,
            project_files=event.project_files,
            entrypoint=event.entrypoint,
            args=event.args,
            artifact_globs=event.artifact_globs,
            resume_from=event.resume_from,
            after=event.after,
        )
    version = state.version + 1
    match event:
        case JobQueued():
            return _replace(
                state, version=version, phase="queued", priority=event.priority, queued_at=at, queued_position=position
            )
        case JobDispatched():
            return _replace(
                state,
                version=version,
                phase="dispatched",
                node=event.node,
                slot=event.slot,
                slots=event.slots or [event.slot],
                attempt=event.attempt,
                workdir=event.workdir,
                dispatched_at=at,
                dispatch_position=position,
                scheduler_id=None,
                gpus_held=event.gpus_held,
            )
        case JobDependenciesMet():
            return _replace(state, version=version, dependencies_met=True)
        case JobHandedOff():
            return _replace(state, version=version, scheduler_id=event.scheduler_id)
        case JobStarted():
            phase: Phase = "cancelling" if state.cancel_requested else "running"
            return _replace(state, version=version, status="running", phase=phase, started_at=at, pgid=event.pgid)
        case JobFinished():
            return _finished(state, event, at)
        case JobScanned():
            return _scanned(state, event)
        case JobCancelRequested():
            phase = "cancelling" if state.phase in ("running", "dispatched") else state.phase
            return _replace(state, version=version, cancel_requested=True, phase=phase, cancelled_by=event.by)
        case JobRequeued():
            # started_at is set only for an attempt the idle-GPU policy took back (its run is charged).
            past = Attempt(
                attempt=event.attempt,
                node=state.node,
                outcome="requeued",
                reason=event.reason,
                ended_at=at,
                started_at=state.started_at,
                # A set-up is charged only with a run the idle policy took back, as the run itself is.
                setup_from=state.setup_from if state.started_at is not None else None,
            )
            return _back_in_queue(state, past, at, position)
        case JobRetried():
            return _retried(state, event, at, position)
        case JobPruned():
            return _replace(state, version=version, pruned_at=at, pruned_reason=event.reason)
        case NotifyRequested():
            return _replace(state, version=version, notify=event.targets)
        case NotifyDelivered() | NotifyFailed():
            return _replace(state, version=version, notified=[*state.notified, event.target])
        case NotifyIdleDelivered() | NotifyIdleFailed():
            told = [*state.idle_notified, (event.attempt, event.target)]
            return _replace(state, version=version, idle_notified=told)
        case JobGpuIdle():
            message = idle_message(event.action, event.minutes, event.below)
            return _replace(state, version=version, gpu_idle=event.action, message=message)
        case JobGpuSummary():
            return _replace(state, version=version, gpu=event.summary)
        case JobArtifactsStored():
            return _replace(state, version=version, artifacts=event.files, artifacts_skipped=event.skipped)
        case JobArtifactsPruned():
            return _replace(state, version=version, artifacts_pruned_at=at)
        case JobEnvReady():
            return _replace(state, version=version, env_ready=event, setup_from=_setup_from(state, event, at))
        case JobEnvFailed():
            return _replace(state, version=version, setup_from=_setup_from(state, event, at))
        case JobSubmitted():
            raise AssertionError(f"job {state.job_id} submitted twice")
    raise AssertionError(f"no job fold for {type(event).__name__}")


_replace = msgspec.structs.replace


def _setup_from(state: JobState, event: JobEnvReady | JobEnvFailed, at: int) -> int:
    """The set-up began ``seconds`` before its report was written, and not before the job's dispatch."""
    return max(state.dispatched_at or 0, at - round(event.seconds * 1_000_000))


def _back_in_queue(state: JobState, past: Attempt, at: int, position: int) -> JobState:
    """The attempt is over and kept in the history; the job waits in the queue for the next one."""
    return _replace(
        state,
        version=state.version + 1,
        status="pending",
        phase="queued",
        node=None,
        slot=None,
        slots=[],
        scheduler_id=None,
        workdir=None,
        dispatched_at=None,
        dispatch_position=None,
        started_at=None,
        setup_from=None,
        pgid=None,
        gpu_idle=None,
        queued_at=at,
        queued_position=position,
        history=[*state.history, past],
    )


def _retried(state: JobState, event: JobRetried, at: int, position: int) -> JobState:
    past = Attempt(
        attempt=event.attempt,
        node=state.node,
        outcome="retried",
        reason=event.reason,
        ended_at=at,
        started_at=state.started_at,
        setup_from=state.setup_from,
        exit_code=event.exit_code,
        signal=event.signal,
        message=event.message,
        stdout=event.stdout,
        stderr=event.stderr,
    )
    return _replace(_back_in_queue(state, past, at, position), retries_used=state.retries_used + 1)


def _scanned(state: JobState, event: JobScanned) -> JobState:
    if event.verdict == "pending":
        return _replace(state, version=state.version + 1, phase="scanning")
    # A verdict ends the scanning phase (the job waits to be queued).
    return _replace(
        state,
        version=state.version + 1,
        scan_verdict=event.verdict,
        phase="submitted",
        findings=state.findings + event.findings,
    )


def _finished(state: JobState, event: JobFinished, at: int) -> JobState:
    return _replace(
        state,
        version=state.version + 1,
        status=event.status,
        phase="finished",
        completed_at=at,
        reason=event.reason,
        exit_code=event.exit_code,
        signal=event.signal,
        stdout=event.stdout,
        stderr=event.stderr,
        results=event.results,
        results_file=event.results_file,
        # An idle-GPU warning stays the job's word when its end has none of its own.
        message=event.message if event.message is not None or state.gpu_idle is None else state.message,
    )


# --- decide -----------------------------------------------------------------------------------


def _require_open(job: JobState) -> None:
    if job.is_terminal:
        raise InvalidTransition(f"Job already {job.status}")


def decide_scan(job: JobState, verdict: JobScanned) -> list[AnyEvent]:
    """A verdict for a job still waiting on its scan; a rejection ends the job at once."""
    _require_open(job)
    if job.phase not in ("submitted", "scanning"):
        raise InvalidTransition(f"job {job.job_id} was already scanned (phase {job.phase})")
    if verdict.verdict != "rejected":
        return [verdict]
    detail = "; ".join(f"line {f.line}: {f.message} [{f.rule}]" for f in verdict.findings)
    return [
        verdict,
        JobFinished(
            job_id=job.job_id, status="failed", reason="rejected", message=f"Code security check failed: {detail}"
        ),
    ]


def decide_queue(job: JobState, *, priority: int = 0, reason: str = "submitted") -> list[AnyEvent]:
    """Queue a submitted job whose scan (if any) did not reject it; not while a review is pending."""
    _require_open(job)
    if job.phase != "submitted" or job.scan_verdict == "rejected":
        raise InvalidTransition(f"job {job.job_id} cannot be queued in phase {job.phase}")
    return [JobQueued(job_id=job.job_id, priority=priority, reason=reason)]


def decide_dispatch(
    job: JobState, *, node: str, slots: list[int], workdir: str, node_has_gpus: bool = True
) -> list[AnyEvent]:
    """Dispatch the next attempt onto ``job.slots_needed`` slots of one node; at most once per attempt."""
    _require_open(job)
    if job.phase != "queued":
        raise InvalidTransition(f"job {job.job_id} is not queued (phase {job.phase})")
    if len(slots) != job.slots_needed or len(set(slots)) != len(slots):
        raise InvalidTransition(f"job {job.job_id} needs {job.slots_needed} distinct slot(s), not {slots}")
    return [
        JobDispatched(
            job_id=job.job_id,
            node=node,
            slot=slots[0],
            slots=slots if len(slots) > 1 else [],  # one slot stays in the pre-multi-GPU shape
            attempt=job.attempt + 1,
            workdir=workdir,
            gpus_held=None if node_has_gpus else 0,  # GPU time is charged only for GPUs held
        )
    ]


def decide_hand_off(job: JobState, *, attempt: int, scheduler: str, scheduler_id: str) -> list[AnyEvent]:
    """Record the outside scheduler's id of the current attempt, once."""
    _require_open(job)
    if job.attempt != attempt or job.node is None:
        raise InvalidTransition(f"job {job.job_id} attempt {attempt} is not the dispatched one")
    if job.scheduler_id is not None:
        raise InvalidTransition(f"job {job.job_id} is already handed off as {job.scheduler_id}")
    return [JobHandedOff(job_id=job.job_id, attempt=attempt, scheduler_id=scheduler_id, scheduler=scheduler)]


def decide_start(
    job: JobState, *, attempt: int, pid: int, pgid: int, started_at_node: str | None = None
) -> list[AnyEvent]:
    _require_open(job)
    if job.phase not in ("dispatched", "cancelling") or job.started_at is not None or job.attempt != attempt:
        raise InvalidTransition(f"job {job.job_id} attempt {attempt} cannot start (phase {job.phase})")
    assert job.node is not None
    return [
        JobStarted(
            job_id=job.job_id, node=job.node, attempt=attempt, pid=pid, pgid=pgid, started_at_node=started_at_node
        )
    ]


def decide_cancel(job: JobState, *, by: str, reason: str = "cancelled by user") -> list[AnyEvent]:
    """Cancel is a request; a job that no runner owns yet ends at once."""
    _require_open(job)
    request = JobCancelRequested(job_id=job.job_id, by=by, reason=reason)
    if job.cancel_requested:  # a second cancel while the runner is killing the job: refused, as for an ended one
        raise InvalidTransition("Job already cancelling")
    if job.phase in ("dispatched", "running", "cancelling"):
        return [request]
    return [
        request,
        JobFinished(job_id=job.job_id, status="cancelled", reason="cancelled", attempt=job.attempt, message=reason),
    ]


def decide_requeue(job: JobState, *, attempt: int, reason: str) -> list[AnyEvent]:
    """Abandon an attempt that never started (its node was lost before the job ran)."""
    _require_open(job)
    # "cancelling" is a dispatched attempt whose cancel was requested: it ends instead of requeueing.
    if job.phase not in ("dispatched", "cancelling") or job.attempt != attempt or job.started_at is not None:
        raise InvalidTransition(f"job {job.job_id} attempt {attempt} cannot be requeued (phase {job.phase})")
    if job.cancel_requested:
        return [JobFinished(job_id=job.job_id, status="cancelled", reason="cancelled", attempt=attempt)]
    return [JobRequeued(job_id=job.job_id, attempt=attempt, reason=reason)]


def decide_finish(job: JobState, finished: JobFinished) -> list[AnyEvent]:
    """The terminal event of the current attempt; terminal statuses are final."""
    _require_open(job)
    if finished.attempt and finished.attempt != job.attempt:
        raise InvalidTransition(f"job {job.job_id}: attempt {finished.attempt} is not the current one")
    return [finished]
