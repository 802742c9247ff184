"""The fair-share fold's live side and the queue order it gives: usage charged as attempts end, and the score.

``charge_attempt`` is what ``Views`` runs per job event (and the replay per attempt, in log order);
``rank`` orders the queued jobs by the documented score (docs/design.md, "Fair share") in time
O(queued + running): it reads each competing user's account once, never the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ledger.domain.events import JobGpuSummary
from ledger.domain.jobs import JobState
from ledger.domain.shares import (
    UserShare,
    Weights,
    charged,
    fairshare_factor,
    job_priority,
    run_usage,
    usage_now,
)


class Ranked(NamedTuple):
    """A queued job, its score, and the factors that made it (a tuple: a 25 k queue makes 25 k of these)."""

    job: JobState
    score: float
    fairshare: float
    age: float
    priority: int


def attempt_end(before: JobState | None, after: JobState) -> tuple[int, int] | None:
    """(charged_from, GPUs) of an attempt that had begun (its set-up or its run) and ends with this event,
    else None.

    An attempt ends when the job ends, or when it starts again (a retry) or forgets its start."""
    if before is None or before.charged_from is None:
        return None
    if before.started_at is None and after.phase == "queued" and after.retries_used == before.retries_used:
        return None  # requeued during its set-up (its node lost): the platform's, uncharged as in the quota
    if (after.is_terminal and not before.is_terminal) or after.charged_from != before.charged_from:
        return before.charged_from, before.charged_gpus
    return None


def charge_attempt(
    shares: dict[str, UserShare], user_id: str, run: tuple[int, int], at_us: int, half_life_s: float
) -> None:
    """Add an ended attempt's decayed GPU-seconds to its user's account (created on first use)."""
    started_at, gpus = run
    charge_usage(shares, user_id, run_usage(gpus, started_at, at_us, half_life_s), at_us, half_life_s)


def charge_usage(shares: dict[str, UserShare], user_id: str, usage: float, at_us: int, half_life_s: float) -> None:
    account = shares.get(user_id) or UserShare(user_id=user_id)
    shares[user_id] = charged(account, usage, at_us, half_life_s)


def idle_surcharge(job: JobState, event: JobGpuSummary, at_us: int, half_life_s: float) -> float:
    """Decayed GPU-seconds added for the attempt's held-but-idle GPU time (GPU_IDLE_CHARGE_FACTOR, as the
    summary recorded it): the attempt's charge times its idle share (1 - used / held) times (factor - 1)."""
    summary, factor = event.summary, event.idle_charge_factor
    if factor <= 1.0 or job.started_at is None or summary.held_gpu_s <= 0:
        return 0.0
    idle = max(0.0, 1.0 - summary.used_gpu_s / summary.held_gpu_s)
    return (factor - 1.0) * idle * run_usage(job.charged_gpus, job.started_at, at_us, half_life_s)


def live_usage(account: UserShare | None, running: Iterable[JobState], now_us: int, half_life_s: float) -> float:
    """A user's decayed usage now: ended attempts, plus what their running jobs have used so far."""
    total = usage_now(account, now_us, half_life_s) if account is not None else 0.0
    for job in running:
        if job.charged_from is not None:
            total += run_usage(job.charged_gpus, job.charged_from, now_us, half_life_s)
    return total


def gpus_in_use(on_nodes: Iterable[JobState]) -> dict[str, int]:
    """GPUs each user's jobs hold on nodes (dispatched or running)."""
    held: dict[str, int] = {}
    for job in on_nodes:
        held[job.user_id] = held.get(job.user_id, 0) + job.charged_gpus
    return held


def factors_by_user(
    queued: list[JobState], on_nodes: list[JobState], shares: Mapping[str, UserShare], now_us: int, half_life_s: float
) -> dict[str, float]:
    """Each competing user's fair-share factor: users with jobs queued or on nodes compete."""
    running: dict[str, list[JobState]] = {}
    for job in on_nodes:
        running.setdefault(job.user_id, []).append(job)
    users = {job.user_id for job in queued} | set(running)
    usage = {u: live_usage(shares.get(u), running.get(u, ()), now_us, half_life_s) for u in users}
    share = {u: _share(shares, u) for u in users}
    total_usage, total_shares = sum(usage.values()), sum(share.values())
    return {u: fairshare_factor(usage[u], total_usage, share[u], total_shares) for u in users}


def _share(shares: Mapping[str, UserShare], user_id: str) -> float:
    account = shares.get(user_id)
    return account.share if account is not None else 1.0


def allowed_priority(shares: Mapping[str, UserShare], user_id: str) -> int:
    account = shares.get(user_id)
    return account.priority if account is not None else 0


def rank(
    queued: list[JobState],
    on_nodes: list[JobState],
    shares: Mapping[str, UserShare],
    *,
    now_us: int,
    half_life_s: float,
    weights: Weights,
) -> list[Ranked]:
    """Queued jobs by score, highest first; equal scores by submit position.

    The score is ``ledger.domain.shares.score``, written out here with the per-user part computed once per
    user: this loop runs over every queued job at every plan and dispatch pass."""
    factors = factors_by_user(queued, on_nodes, shares, now_us, half_life_s)
    allowed = {u: allowed_priority(shares, u) for u in factors}
    age_per_us = 1.0 / (weights.age_max_s * 1_000_000) if weights.age_max_s > 0 else 0.0
    base = {u: weights.fairshare * f for u, f in factors.items()}
    w_age, w_priority = weights.age, weights.priority
    ranked, keys = [], []
    for index, job in enumerate(queued):
        user = job.user_id
        waited = now_us - (job.queued_at or job.created_at)
        age = 0.0 if waited <= 0 else min(waited * age_per_us, 1.0)
        priority = job_priority(job.asked_priority, allowed[user])
        total = base[user] + w_age * age + w_priority * priority
        ranked.append(Ranked(job, total, factors[user], age, priority))
        keys.append((-total, job.position, index))  # positions are unique: the index is never compared
    keys.sort()
    return [ranked[index] for _, _, index in keys]
