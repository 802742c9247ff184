"""Fair-share accounts and the scored queue as wire documents (bounded by their callers)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from api.auth import Identity
from api.present import factors_of
from api.schemas import Account, Accounts, QueueDocument, QueueRow
from ledger.domain.clock import iso
from ledger.domain.jobs import JobState
from ledger.domain.shares import UserShare
from ledger.domain.tokens import may_see
from projections.fairshare import factors_by_user, live_usage
from projections.plan import Plan, pending_reason
from projections.views import Views

US = 1_000_000


def competing_factors(views: Views, now: int) -> dict[str, float]:
    """The fair-share factor of each user with jobs queued or on nodes, at ``now``."""
    queued = [views.jobs[j] for j in list(views.queued)]
    return factors_by_user(queued, views.on_nodes(), views.shares, now, views.half_life_s)


def account_view(
    views: Views, user_id: str, now: int, factors: dict[str, float], running: list[JobState] | None = None
) -> Account:
    """A user's policy, decayed usage now (running jobs' use so far included) and current factor.
    ``running``: the user's jobs on nodes, when the caller has them (else they are looked up)."""
    account = views.shares.get(user_id) or UserShare(user_id=user_id)
    if running is None:
        running = [j for j in views.on_nodes() if j.user_id == user_id]
    usage = live_usage(account, running, now, views.half_life_s)
    return Account(
        user_id=user_id,
        share=account.share,
        priority=account.priority,
        max_active_jobs=account.max_active_jobs,
        max_gpus=account.max_gpus,
        usage_gpu_hours=round(usage / 3600, 6),
        fairshare=round(factors[user_id], 6) if user_id in factors else None,
        policy_version=account.version,
        set_by=account.set_by,
        reason=account.reason,
    )


def accounts_document(
    views: Views, now: int, *, users: Iterable[str] | None = None, factors: dict[str, float] | None = None
) -> Accounts:
    """Every known user's account (those with jobs, a policy or usage), by user id; or only ``users``'
    with the ``factors`` a plan holds (the dashboard: bounded, and no walk of the queue per request)."""
    factors = competing_factors(views, now) if factors is None else factors
    picked = sorted(set(views.users) | set(views.shares)) if users is None else list(users)
    running: dict[str, list[JobState]] = {}
    for job in views.on_nodes():  # once, not once per user
        running.setdefault(job.user_id, []).append(job)
    return Accounts(
        half_life_s=views.half_life_s,
        users={u: account_view(views, u, now, factors, running.get(u, [])) for u in picked},
    )


def queue_document(
    views: Views, plan: Plan, now: int, who: Identity, *, live: bool, offset: int, limit: int
) -> QueueDocument:
    """The queued jobs in dispatch order with their factors; another user's jobs show no ids to a user."""
    rows = []
    # a plan's jobs are in its order (built so, never changed): the page costs the page (and its offset in C)
    for job_id, entry in itertools.islice(plan.jobs.items(), offset, offset + limit):
        job = views.jobs[job_id]
        visible = may_see(who, job.user_id)
        rows.append(
            QueueRow(
                job_id=job_id if visible else None,
                user_id=job.user_id if visible else None,
                queue_position=entry.position,
                **factors_of(entry),
                reason=pending_reason(job, plan, views),
                gpus=job.gpus,
                waiting_s=round((now - (job.queued_at or job.created_at)) / US, 1),
                node=entry.node,
                estimated_start_at=iso(entry.start_at) if entry.start_at is not None else None,
            )
        )
    return QueueDocument(
        position=views.position,
        at=iso(now),
        live=live,
        half_life_s=views.half_life_s,
        total=len(plan.jobs),
        offset=offset,
        limit=limit,
        queue=rows,
    )
