"""What the dashboard's handlers declare they need: the runtime, the caller, the instant to show.

Each is a Litestar dependency (``Provide``); the admin check is a guard. Authentication always
runs before anything is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery

from api.auth import Identity, optional, require_admin
from api.errors import BadRequest, NotAuthenticated
from api.runtime import Runtime
from api.web.asof import PastViews
from ledger.clock import now_us, position_or_time
from ledger.jobs import JobState
from ledger.tokens import may_see
from projections.plan import Plan, make_plan
from projections.views import Views


@dataclass(frozen=True)
class Moment:
    """The views to show, the instant they stand for, and the plan at that instant."""

    views: Views
    now: int
    plan: Plan
    live: bool


def provide_runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def token_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A token, when one is sent, must be valid (401): checked before any parameter is parsed."""
    runtime: Runtime = connection.app.state.runtime
    identity = optional(runtime.ledger.views, connection.headers.get("authorization"))
    if identity is not None:
        runtime.token_usage.touch(identity.token_id)
    connection.state.identity = identity


async def signed_in_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """No token is a 401 (after ``token_guard``, which runs first, as the controller's guard)."""
    if connection.state.identity is None:
        raise NotAuthenticated("Not authenticated: send 'Authorization: Bearer <token>'")


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    await signed_in_guard(connection, handler)
    require_admin(connection.state.identity)


def provide_viewer(request: Request[Any, Any, Any]) -> Identity | None:
    """The caller the guards identified, or None: the anonymous view."""
    identity: Identity | None = request.state.identity
    return identity


def provide_identity(request: Request[Any, Any, Any]) -> Identity:
    """The caller on a handler behind ``signed_in_guard``."""
    identity: Identity | None = request.state.identity
    assert identity is not None  # the guard answered 401 otherwise
    return identity


def _past_views(request: Request[Any, Any, Any], runtime: Runtime) -> PastViews:
    state = request.app.state
    if "past_views" not in state:
        state.past_views = PastViews(str(runtime.ledger.path))
    past: PastViews = state.past_views
    return past


async def provide_moment(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], as_of: FromQuery[str | None] = None
) -> Moment:
    """Live views, or those replayed up to ``as_of`` (a ledger position or an ISO time)."""
    live = runtime.ledger.views
    if as_of is None or as_of in ("", "live"):
        now = now_us()
        return Moment(views=live, now=now, plan=runtime.plans.get(live, now), live=True)
    try:
        position, time_us = position_or_time(as_of, exact=True)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None
    past = _past_views(request, runtime)
    if position is None and time_us is not None:
        position = await past.position_at(time_us)
    assert position is not None
    if position >= runtime.ledger.head:
        now = now_us()
        return Moment(views=live, now=now, plan=runtime.plans.get(live, now), live=True)
    views = await past.at(position)
    return Moment(
        views=views, now=views.recorded_at, plan=make_plan(views, views.recorded_at, runtime.plans.weights), live=False
    )


def can_see(who: Identity | None, job: JobState) -> bool:
    """Admins see every job, users their own, anonymous callers none."""
    return may_see(who, job.user_id)


DEPENDENCIES = {
    "runtime": Provide(provide_runtime, sync_to_thread=False),
    "viewer": Provide(provide_viewer, sync_to_thread=False),
    "identity": Provide(provide_identity, sync_to_thread=False),
    "moment": Provide(provide_moment),
}
