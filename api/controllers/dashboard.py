"""The admin dashboard document, live or as of a past instant or ledger position; its active jobs and users by page."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from api.auth import Identity
from api.context import admin_only
from api.dashboard import dashboard_document
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.ports import Cluster, EventLog, Plans, Port, ServerState, read_views
from api.present import job_status
from api.schemas import ActivePage, Dashboard, UsersPage
from ledger.domain.clock import now_us, position_or_time
from ledger.store.settings import Settings
from projections.asof import planned_as_of
from projections.dashboard import user_rows
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


async def views_at(events: EventLog, plans: Plans, as_of: str | None) -> tuple[Views, int, Plan]:
    """The live views and plan, or those as of a point (replayed in a worker thread)."""
    if as_of is None:
        views, now = read_views(events), now_us()
        return views, now, plans.get(views, now)
    position, time_us = _as_of(as_of)
    return await planned_as_of(events.path, position=position, time_us=time_us, weights=plans.weights)


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
        as_of: str | None = AS_OF,
    ) -> Dashboard:
        views, now, plan = await views_at(events, plans, as_of)
        live = as_of is None
        return dashboard_document(
            views,
            plan,
            identity,
            now=now,
            limits=(settings.reads.dashboard_active_jobs, settings.reads.dashboard_users),
            slurm=cluster.cluster_info() if live else None,
            disk=server.disk_use() if live else None,  # DiskUse: cached, measured in a thread
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
        as_of: str | None = AS_OF,
        offset: int = Parameter(default=0, ge=0, le=10**9),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> ActivePage:
        views, _, plan = await views_at(events, plans, as_of)
        total, jobs = views.active_page(offset, limit)
        return ActivePage(total=total, offset=offset, limit=limit, jobs=[job_status(j, views, plan) for j in jobs])

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
        as_of: str | None = AS_OF,
        offset: int = Parameter(default=0, ge=0, le=10**9),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> UsersPage:
        views, _, _ = await views_at(events, plans, as_of)
        total, users = views.ranked_users(offset, limit)
        return UsersPage(total=total, offset=offset, limit=limit, users=user_rows(users))
