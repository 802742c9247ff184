"""The writes of notifications: each target's outcome (of a job's end or its idle GPUs), a user's default targets."""

from __future__ import annotations

from ledger.domain.events import NotifyDelivered, NotifyFailed, NotifyIdleDelivered, NotifyIdleFailed, UserNotifySet
from ledger.domain.notify import decide_default, decide_idle_outcome, decide_outcome
from ledger.store.commands import job_of
from ledger.store.store import Write

ACTOR = "notifier"


def record_outcome(outcome: NotifyDelivered | NotifyFailed) -> Write:
    """Checked in the write transaction, so a target's outcome is recorded once whoever races to it."""
    return Write(decide=lambda views: decide_outcome(job_of(views, outcome.job_id), outcome), actor=ACTOR)


def record_idle_outcome(outcome: NotifyIdleDelivered | NotifyIdleFailed) -> Write:
    """Checked in the write transaction, like ``record_outcome``: once per target and idle verdict."""
    return Write(decide=lambda views: decide_idle_outcome(job_of(views, outcome.job_id), outcome), actor=ACTOR)


def set_default(user_id: str, targets: list[str], *, by: str, actor: str, allowed: list[str]) -> Write:
    event = UserNotifySet(user_id=user_id, targets=targets, by=by)
    return Write(decide=lambda _views: decide_default(event, allowed), actor=actor)
