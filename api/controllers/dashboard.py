"""The admin dashboard document, live or as of a past instant or ledger position; its active jobs and users by page."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from api import pastdocs
from api.asofpool import Past, as_document, asof_pool
from api.auth import Identity
from api.context import admin_only
from api.dashboard import dashboard_document
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.ports import Cluster, EventLog, Plans, Port, ServerState, read_views
from api.schemas import ActivePage, Dashboard, UsersPage
from ledger.domain.clock import now_us, position_or_time
from ledger.store.settings import Settings
from projections.plan import Plan
from projections.views import Views

AS_OF = Parameter(
    default=None,
    min_length=1,
    max_length=64,
    description="The document as it stood at this ledger position or RFC 3339 instant (with its offset)",
    schema_extra={
        "one_of": [
            Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]{1,18}$", description="A ledger position"),
            Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME, description="An instant"),
        ]
    },
)


def _as_of(text: str) -> tuple[int | None, int | None]:
    """A ledger position or an RFC 3339 time with its offset, exactly as documented (the web panels' parser too)."""
    try:
        return position_or_time(text, exact=True)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None


def views_now(events: EventLog, plans: Plans) -> tuple[Views, int, Plan]:
    """The live views, the instant now, and the plan at it."""
    views, now = read_views(events), now_us()
    return views, now, plans.get(views, now)


def past_point(events: EventLog, plans: Plans, as_of: str | None) -> Past | None:
    """The point ``as_of`` names (replayed in an as-of child), or None for the live documents."""
    if as_of is None:
        return None
    position, time_us = _as_of(as_of)
    return Past(str(events.path), position, time_us, plans.weights)


class DashboardController(Controller):
    path = "/api"
    tags = ["dashboard"]

    @get(
        "/dashboard",
        guards=[admin_only],
        summary="The admin dashboard document (?as_of=ISO time or ledger position)",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def dashboard(
        self,
        server: Port[ServerState],
        settings: NamedDependency[Settings],
        cluster: Port[Cluster],
        plans: Port[Plans],
        events: Port[EventLog],
        identity: NamedDependency[Identity],
        state: State,
        as_of: str | None = AS_OF,
    ) -> Dashboard:
        limits = (settings.reads.dashboard_active_jobs, settings.reads.dashboard_users)
        past = past_point(events, plans, as_of)
        if past is not None:
            return as_document(await asof_pool(state).document(pastdocs.dashboard, past, identity, limits), Dashboard)
        views, now, plan = views_now(events, plans)
        return dashboard_document(
            views,
            plan,
            identity,
            now=now,
            limits=limits,
            slurm=cluster.cluster_info(),
            disk=server.disk_use(),  # DiskUse: cached, measured in a thread
        )

    @get(
        "/dashboard/active",
        guards=[admin_only],
        summary="The dashboard's active jobs, oldest first, one page at a time",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def active(
        self,
        plans: Port[Plans],
        events: Port[EventLog],
        state: State,
        as_of: str | None = AS_OF,
        offset: int = Parameter(default=0, ge=0, le=10**9),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> ActivePage:
        past = past_point(events, plans, as_of)
        if past is not None:
            return as_document(await asof_pool(state).document(pastdocs.active_page, past, offset, limit), ActivePage)
        return pastdocs.active_page(*views_now(events, plans), offset, limit)

    @get(
        "/dashboard/users",
        guards=[admin_only],
        summary="The dashboard's users with their counts by status, active ones first, one page at a time",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def users(
        self,
        plans: Port[Plans],
        events: Port[EventLog],
        state: State,
        as_of: str | None = AS_OF,
        offset: int = Parameter(default=0, ge=0, le=10**9),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> UsersPage:
        past = past_point(events, plans, as_of)
        if past is not None:
            return as_document(await asof_pool(state).document(pastdocs.users_page, past, offset, limit), UsersPage)
        return pastdocs.users_page(*views_now(events, plans), offset, limit)
