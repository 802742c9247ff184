"""What only the web dashboard's handlers need: the instant to show (``moment``); the guards and every
other provider (the caller among them) are ``api.context``'s, shared with ``/api``.

Authentication always runs before anything is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery

from api.auth import Identity
from api.errors import BadRequest
from api.ports import EventLog, Plans, Port
from api.web.asof import PastViews
from ledger.domain.clock import now_us, position_or_time
from ledger.domain.jobs import JobState
from ledger.domain.tokens import may_see
from projections.plan import Plan, make_plan
from projections.views import Views


@dataclass(frozen=True)
class Moment:
    """The views to show, the instant they stand for, and the plan at that instant."""

    views: Views
    now: int
    plan: Plan
    live: bool


def _past_views(request: Request[Any, Any, Any], events: EventLog) -> PastViews:
    state = request.app.state
    if "past_views" not in state:
        state.past_views = PastViews(str(events.path))
    past: PastViews = state.past_views
    return past


async def provide_moment(
    request: Request[Any, Any, Any],
    plans: Port[Plans],
    events: Port[EventLog],
    views: NamedDependency[Views],
    as_of: FromQuery[str | None] = None,
) -> Moment:
    """Live views, or those replayed up to ``as_of`` (a ledger position or an ISO time)."""
    live = views
    if as_of is None or as_of in ("", "live"):
        now = now_us()
        return Moment(views=live, now=now, plan=plans.get(live, now), live=True)
    try:
        position, time_us = position_or_time(as_of, exact=True)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None
    past = _past_views(request, events)
    if position is None and time_us is not None:
        position = await past.position_at(time_us)
    assert position is not None
    if position >= events.head:
        now = now_us()
        return Moment(views=live, now=now, plan=plans.get(live, now), live=True)
    past_views = await past.at(position)
    return Moment(
        views=past_views,
        now=past_views.recorded_at,
        plan=make_plan(past_views, past_views.recorded_at, plans.weights),
        live=False,
    )


def can_see(who: Identity | None, job: JobState) -> bool:
    """Admins see every job, users their own, anonymous callers none."""
    return may_see(who, job.user_id)


DEPENDENCIES = {"moment": Provide(provide_moment)}
