"""What only the web dashboard's handlers need: the instant to show (``moment``); the guards and every
other provider (the caller among them) are ``api.context``'s, shared with ``/api``.

Authentication always runs before anything is looked up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeAlias

from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, SkipValidation

from api.asofpool import Past
from api.auth import Identity
from api.errors import BadRequest
from api.ports import EventLog, Plans, Port
from ledger.domain.clock import now_us, position_or_time
from ledger.domain.jobs import JobState
from ledger.domain.tokens import may_see
from ledger.store.schema import connect
from projections.plan import Plan
from projections.snapshots import position_at
from projections.views import Views


@dataclass(frozen=True)
class Moment:
    """The views to show, the instant they stand for, and the plan at that instant."""

    views: Views
    now: int
    plan: Plan
    live: bool


def position_of(path: str, time_us: int) -> int:
    """The web slider's position at an instant (the one position-at-instant, on its own connection)."""
    conn = connect(path, readonly=True)
    try:
        return position_at(conn, time_us)
    finally:
        conn.close()


async def provide_moment(
    plans: Port[Plans],
    events: Port[EventLog],
    views: NamedDependency[Views],
    as_of: FromQuery[str | None] = None,
) -> Moment | Past:
    """Live views, or the past ledger position ``as_of`` names (a position or an ISO time), which the
    panel handlers have an as-of child render (``api.web.asof``)."""
    live = views
    if as_of is None or as_of in ("", "live"):
        now = now_us()
        return Moment(views=live, now=now, plan=plans.get(live, now), live=True)
    try:
        position, time_us = position_or_time(as_of, exact=True)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None
    if position is None and time_us is not None:  # one indexed lookup, in a thread: off the loop all the same
        position = await asyncio.to_thread(position_of, str(events.path), time_us)
    assert position is not None
    if position >= events.head:
        now = now_us()
        return Moment(views=live, now=now, plan=plans.get(live, now), live=True)
    return Past(str(events.path), position, None, plans.weights)


# The moment a panel shows: live views, or a past position for an as-of child. Taken as given: the
# signature model cannot check a union of two dataclasses, and the provider's return type is the check.
When: TypeAlias = SkipValidation[NamedDependency[Moment | Past]]


def can_see(who: Identity | None, job: JobState) -> bool:
    """Admins see every job, users their own, anonymous callers none."""
    return may_see(who, job.user_id)


DEPENDENCIES = {"moment": Provide(provide_moment)}
