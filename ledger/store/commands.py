"""Commands: each builds a ``Write`` whose decide step runs inside the writer's transaction.

This is where checks that span streams live (active-job cap, rate limit, free node slot): the decide
step sees the views exactly as the append will leave them, so concurrent requests cannot both pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from ledger.domain.artifact_quota import fit_quota, quota_left
from ledger.domain.clock import iso
from ledger.domain.dependencies import is_waiting
from ledger.domain.errors import InvalidTransition, LimitExceeded, NotAllowed, NotFound, QuotaExceeded
from ledger.domain.events import (
    AnyEvent,
    HalfLifeSet,
    JobArtifactsStored,
    JobDependenciesMet,
    JobEnvFailed,
    JobEnvReady,
    JobFinished,
    JobQueued,
    JobScanned,
    JobSubmitted,
    NodeRegistered,
    NodeRestarted,
    NotifyRequested,
    TokenIssued,
    UserPolicySet,
)
from ledger.domain.gpu import GpuSample, GpuSummary
from ledger.domain.gpu_policy import decide_gpu_idle, gpu_summary_events, idle_ending
from ledger.domain.jobs import (
    JobState,
    decide_cancel,
    decide_dispatch,
    decide_hand_off,
    decide_queue,
    decide_requeue,
    decide_scan,
    decide_start,
    evolve_job,
)
from ledger.domain.nodes import (
    NodeState,
    decide_drain,
    decide_fence_required,
    decide_fenced,
    decide_health,
    decide_register,
    decide_restarted,
    decide_restarting,
    decide_retire,
    decide_undrain,
    fleet_has_gpus,
    takes,
)
from ledger.domain.quotas import QuotaDay, QuotaLimits, exhausted, retry_after_s
from ledger.domain.retries import decide_attempt_end
from ledger.domain.shares import UserShare, decide_policy
from ledger.domain.tokens import decide_issue, decide_revoke
from ledger.domain.users import RATE_WINDOW_US
from ledger.store.dependencies import check_at_submit
from ledger.store.state import LedgerState
from ledger.store.store import Write


class SubmitLimits:
    """The per-user limits a submission is checked against (None: exempt)."""

    def __init__(self, *, max_active: int, per_minute: int, quotas: QuotaLimits | None = None) -> None:
        self.max_active = max_active
        self.per_minute = per_minute
        self.quotas = quotas or QuotaLimits()


def job_of(views: LedgerState, job_id: str) -> JobState:
    job = views.jobs.get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    return job


def node_of(views: LedgerState, name: str) -> NodeState:
    node = views.nodes.get(name)
    if node is None:
        raise NotFound(f"Node {name} not found")
    return node


def _check_limits(views: LedgerState, user_id: str, limits: SubmitLimits, now: int, gpus: int = 1) -> None:
    stats = views.users.get(user_id)
    if stats is None:
        return
    account = views.shares.get(user_id)
    max_active = limits.max_active  # a user's own cap (user.policy_set) overrides the global one
    if account is not None and account.max_active_jobs is not None:
        max_active = account.max_active_jobs
    recent = [t for t in stats.recent_submits if t > now - RATE_WINDOW_US]
    if limits.per_minute and len(recent) >= limits.per_minute:  # 0: unlimited
        retry_after = max(1, math.ceil((recent[-limits.per_minute] + RATE_WINDOW_US - now) / 1_000_000))
        raise LimitExceeded(
            f"Rate limit exceeded. Maximum {limits.per_minute} requests per 60s. Retry after {retry_after}s.",
            retry_after=retry_after,
        )
    active = active_submissions(views, user_id, stats.active)
    if max_active and active >= max_active:
        raise LimitExceeded(
            f"Queue limit exceeded. You already have {active} job(s) in progress. "
            f"Maximum {max_active} jobs per user allowed.",
            retry_after=30,
        )
    quotas = limits.quotas if gpus else msgspec.structs.replace(limits.quotas, gpu_hours=0.0)  # CPU-only: no GPU time
    _check_quota(stats.quota, quotas, now)


def active_submissions(views: LedgerState, user_id: str, active_jobs: int) -> int:
    """The user's submissions in progress: an array with tasks not yet ended counts once, however
    many tasks it has (costs the arrays in progress, not their tasks)."""
    mine = [p for p in views.arrays.values() if p.user_id == user_id]
    return active_jobs - sum(p.active for p in mine) + len(mine)


def _check_quota(today: QuotaDay | None, quotas: QuotaLimits, now: int) -> None:
    """A used-up daily quota: 429 naming it, what is used and left, and when it resets."""
    figure = exhausted(today, quotas, now)
    if figure is None:
        return
    resets_at = iso(figure.resets_at_us)
    what = "submissions" if figure.quota == "submissions" else "GPU-hours"
    raise QuotaExceeded(
        f"Quota exceeded: {figure.used:g} of {figure.limit:g} {what} used today (UTC), {figure.left:g} left; "
        f"it resets at {resets_at}.",
        retry_after=retry_after_s(figure, now),
        details={
            "quota": figure.quota,
            "limit": figure.limit,
            "used": figure.used,
            "left": figure.left,
            "resets_at": resets_at,
        },
    )


def _check_policy(submitted: JobSubmitted, account: UserShare | None) -> None:
    """What the user's policy allows a job to ask: no priority above theirs, no more GPUs than their cap."""
    allowed = account.priority if account is not None else 0
    if submitted.asked_priority is not None and submitted.asked_priority > allowed:
        raise NotAllowed(
            f"Invalid field priority: {submitted.asked_priority} is above the highest level "
            f"your jobs may ask for ({allowed}); ask for it or lower"
        )
    if account is not None and account.max_gpus and submitted.gpus > account.max_gpus:
        raise NotAllowed(
            f"Invalid field gpus: {submitted.gpus} GPUs is more than your cap of {account.max_gpus} (max_gpus)"
        )


def submit_job(
    submitted: JobSubmitted,
    *,
    static_scan: JobScanned | None,
    review_pending: bool,
    limits: SubmitLimits | None,
    now: int,
    actor: str,
    fingerprint: bytes,
    notify: NotifyRequested | None = None,
    admin: bool = False,
) -> Write:
    """Accept a job: limits checked and events appended in one step; queued unless a review is pending
    or it waits on dependencies (``admin``: may name any user's)."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        _check_policy(submitted, views.shares.get(submitted.user_id))
        if limits is not None:
            _check_limits(views, submitted.user_id, limits, now, submitted.gpus)
        after = submitted.after
        waits = after is not None and check_at_submit(views, after, submitted.user_id, admin=admin) == "wait"
        events: list[AnyEvent] = [submitted]
        if after is not None and not waits:
            events.append(JobDependenciesMet(job_id=submitted.job_id))
        if notify is not None:  # before any event that may end the job: its end is then always owed one
            events.append(notify)
        if static_scan is not None:
            events.append(static_scan)
        if review_pending:
            events.append(JobScanned(job_id=submitted.job_id, verdict="pending", scanner="llm"))
        elif not waits:
            events.append(JobQueued(job_id=submitted.job_id, reason="submitted"))
        return events

    return Write(decide=decide, actor=actor, idempotency_key=submitted.idempotency_key, fingerprint=fingerprint)


def record_review(job_id: str, verdict: JobScanned) -> Write:
    """The LLM review's verdict: rejection ends the job, anything else queues it."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        job = job_of(views, job_id)
        events = decide_scan(job, verdict)
        if verdict.verdict != "rejected" and job.array_id is None and not is_waiting(job):
            reviewed = evolve_job(job, verdict, position=job.position, at=views.recorded_at)
            events.extend(decide_queue(reviewed, reason="reviewed"))
        return events

    return Write(decide=decide, actor="scanner:llm")


def cancel_job(job_id: str, *, by: str, actor: str) -> Write:
    return Write(decide=lambda views: decide_cancel(job_of(views, job_id), by=by), actor=actor)


def busy_slots(views: LedgerState, node: str) -> set[int]:
    """The GPU slots held on a node by jobs dispatched there and not yet ended, and by lost jobs not yet
    confirmed dead there (``node.fence_required``)."""
    state = views.nodes.get(node)
    fenced = state.fenced_slots if state is not None else set()
    return fenced | {s for j in views.node_jobs.get(node, []) for s in views.jobs[j].held_slots}


def _check_gpu_cap(views: LedgerState, job: JobState) -> None:
    """A user's ``max_gpus``: the GPUs their jobs on nodes hold, this one included, stay within it."""
    account = views.shares.get(job.user_id)
    if account is None or not account.max_gpus:
        return
    held = sum(
        views.jobs[j].charged_gpus
        for ids in views.node_jobs.values()
        for j in ids
        if views.jobs[j].user_id == job.user_id
    )
    if held + job.gpus > account.max_gpus:
        raise InvalidTransition(f"user {job.user_id} holds {held} of {account.max_gpus} GPUs (max_gpus)")


def dispatch_job(job_id: str, *, node: str, slots: list[int], workdir: str) -> Write:
    """Dispatch to slots of one node, re-checking inside the transaction that the node can take them."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        state = node_of(views, node)
        taken = busy_slots(views, node) & set(slots)
        if not state.ready or taken or max(slots, default=0) >= state.slots:
            raise InvalidTransition(f"node {node} slots {slots} cannot take a job now ({state.status})")
        job = job_of(views, job_id)
        if not takes(job.gpus, state.has_gpus, fleet_has_gpus(views.nodes.values())):  # never a GPU for a CPU-only job
            raise InvalidTransition(f"node {node} does not take jobs asking for {job.gpus} GPUs")
        _check_gpu_cap(views, job)
        return decide_dispatch(job, node=node, slots=slots, workdir=workdir, node_has_gpus=state.has_gpus)

    return Write(decide=decide, actor=f"executor:{node}")


def hand_off_job(job_id: str, *, node: str, attempt: int, scheduler: str, scheduler_id: str) -> Write:
    """``scheduler``: the kind of executor whose own scheduler took the job (``executors/registry.py``)."""
    return Write(
        decide=lambda views: decide_hand_off(
            job_of(views, job_id), attempt=attempt, scheduler=scheduler, scheduler_id=scheduler_id
        ),
        actor=f"executor:{node}",
    )


def start_job(
    job_id: str, *, node: str, attempt: int, pid: int, pgid: int, started_at_node: str | None = None
) -> Write:
    return Write(
        decide=lambda views: decide_start(
            job_of(views, job_id), attempt=attempt, pid=pid, pgid=pgid, started_at_node=started_at_node
        ),
        actor=f"executor:{node}",
    )


def env_ready(ready: JobEnvReady, *, node: str) -> Write:
    """The attempt's declared environment is ready; nothing once the attempt is over or has started (a
    late report): the set-up comes between the dispatch and the start."""

    def decide(views: LedgerState) -> list[AnyEvent]:
        job = job_of(views, ready.job_id)
        return [ready] if _setting_up(job, ready.attempt) else []

    return Write(decide=decide, actor=f"executor:{node}")


def _setting_up(job: JobState, attempt: int) -> bool:
    """The attempt is between its dispatch and its start: where a declared environment is set up."""
    return job.phase in ("dispatched", "cancelling") and job.started_at is None and job.attempt == attempt


def finish_job(
    finished: JobFinished,
    *,
    node: str,
    restart_container: str | None = None,
    gpu: GpuSummary | None = None,
    idle_charge_factor: float = 1.0,
    artifacts: JobArtifactsStored | None = None,
    artifact_quota: int = 0,
    env_failed: JobEnvFailed | None = None,
) -> Write:
    """The terminal event, after the attempt's GPU summary (``gpu``) where it had telemetry and its
    artifacts, if any, in the same step; with LXC restarts, the node turns ``restarting`` in the same
    step, so no dispatch can slip in between a job's end and its node's restart. The artifacts are
    trimmed to what the owner's quota (``artifact_quota``, 0: none) leaves at commit time. A failed
    environment set-up (``env_failed``) comes first, so the attempt's end charges its seconds."""

    def decide(views: LedgerState) -> list[AnyEvent]:
        events = list(_finish_events(views, finished, node, restart_container, gpu, idle_charge_factor))
        if env_failed is not None and events and _setting_up(job_of(views, finished.job_id), env_failed.attempt):
            events.insert(0, env_failed)
        if artifacts is None or not events:
            return events
        owner = views.users.get(job_of(views, finished.job_id).user_id)
        return [fit_quota(artifacts, quota_left(owner, artifact_quota), artifact_quota), *events]

    return Write(decide=decide, actor=f"executor:{node}")


def _finish_events(
    views: LedgerState,
    finished: JobFinished,
    node: str,
    restart_container: str | None,
    gpu: GpuSummary | None = None,
    idle_charge_factor: float = 1.0,
) -> list[AnyEvent]:
    job = job_of(views, finished.job_id)
    events = gpu_summary_events(job, gpu, finished.attempt or job.attempt, idle_charge_factor)
    ending = idle_ending(job, finished)
    events.extend(ending if isinstance(ending, list) else decide_attempt_end(job, ending))
    others = [j for j in views.node_jobs.get(node, []) if j != finished.job_id]
    state = views.nodes.get(node)
    if restart_container and state is not None and not others and not state.restarting:
        events.extend(decide_restarting(state, container=restart_container))
    return events


def flag_gpu_idle(
    job_id: str,
    *,
    node: str,
    attempt: int,
    action: Literal["warn", "cancel", "requeue"],
    minutes: float,
    below: float,
    samples: Sequence[GpuSample],
) -> Write:
    """The idle-GPU policy's verdict on a running attempt, with the samples that justify it."""
    return Write(
        decide=lambda views: decide_gpu_idle(
            job_of(views, job_id), attempt=attempt, action=action, minutes=minutes, below=below, samples=samples
        ),
        actor=f"executor:{node}",
    )


def restarted_node(name: str, restarted: NodeRestarted) -> Write:
    return Write(decide=lambda views: decide_restarted(node_of(views, name), restarted), actor=f"executor:{name}")


def requeue_job(job_id: str, *, node: str, attempt: int, reason: str) -> Write:
    return Write(
        decide=lambda views: decide_requeue(job_of(views, job_id), attempt=attempt, reason=reason),
        actor=f"executor:{node}",
    )


def lose_job(
    job_id: str, *, node: str, attempt: int, finished: JobFinished | None = None, restart_container: str | None = None
) -> Write:
    """A job lost with its node: it ends ``finished`` (a started job) or goes back to the queue (``None``),
    and in the same step its slots are held until the node confirms it dead (``fenced``)."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        job = job_of(views, job_id)
        held = decide_fence_required(
            node_of(views, node), job_id=job_id, attempt_key=job.attempt_key, slots=list(job.held_slots)
        )
        if finished is None:
            return [*decide_requeue(job, attempt=attempt, reason="node_lost"), *held]
        return [*_finish_events(views, finished, node, restart_container), *held]

    return Write(decide=decide, actor=f"executor:{node}")


def fenced(node: str, attempt_key: str) -> Write:
    """The node confirmed a lost attempt dead: its slots may take jobs again."""
    return Write(
        decide=lambda views: decide_fenced(node_of(views, node), attempt_key=attempt_key), actor=f"executor:{node}"
    )


def register_node(spec: NodeRegistered) -> Write:
    return Write(decide=lambda views: decide_register(views.nodes.get(spec.name), spec), actor="system")


def retire_node(name: str) -> Write:
    return Write(decide=lambda views: decide_retire(node_of(views, name)), actor="system")


def node_health(name: str, *, healthy: bool, reason: str, failures: int = 1) -> Write:
    return Write(
        decide=lambda views: decide_health(node_of(views, name), healthy=healthy, reason=reason, failures=failures),
        actor=f"executor:{name}",
    )


def drain_node(name: str, *, by: str, drain: bool, reason: str = "") -> Write:
    decide_fn = decide_drain if drain else decide_undrain
    return Write(decide=lambda views: decide_fn(node_of(views, name), by=by, reason=reason), actor=by)


def issue_token(issued: TokenIssued) -> Write:
    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        return decide_issue(
            issued,
            existing_for_user=views.tokens_of(issued.user_id),
            secret_in_use=issued.secret_sha256 in views.tokens_by_secret,
        )

    return Write(decide=decide, actor=issued.by)


def revoke_token(token_id: str, *, by: str, reason: str = "") -> Write:
    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        token = views.tokens.get(token_id)
        if token is None:
            raise NotFound(f"Token {token_id} not found")
        return decide_revoke(token, by=by, reason=reason)

    return Write(decide=decide, actor=by)


def revoke_user_tokens(user_id: str, *, by: str) -> Write:
    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        live = [t for t in views.tokens_of(user_id) if not t.revoked]
        if not live:
            raise NotFound(f"User {user_id} has no active token")
        return [e for t in live for e in decide_revoke(t, by=by, reason="all tokens of the user revoked")]

    return Write(decide=decide, actor=by)


def set_user_policy(user_id: str, *, by: str, reason: str, **changes: object) -> Write:
    """A ``user.policy_set`` with ``changes`` (share, priority, max_active_jobs, max_gpus) on top of the
    user's current policy: each event carries the whole policy, so the fold is a replacement."""

    def decide(views: LedgerState) -> Sequence[AnyEvent]:
        current = views.shares.get(user_id) or UserShare(user_id=user_id)
        policy: dict[str, Any] = {
            "share": current.share,
            "priority": current.priority,
            "max_active_jobs": current.max_active_jobs,
            "max_gpus": current.max_gpus,
        }
        unknown = set(changes) - set(policy)
        if unknown:
            raise InvalidTransition(f"not a policy field: {', '.join(sorted(unknown))}")
        policy.update(changes)
        return decide_policy(UserPolicySet(user_id=user_id, by=by, reason=reason, **policy))

    return Write(decide=decide, actor=by)


def set_half_life(half_life_s: float) -> Write:
    """Record the FAIRSHARE_HALF_LIFE setting when it differs from the one the fold uses."""
    return Write(decide=lambda _views: [HalfLifeSet(half_life_s=half_life_s)], actor="system")
