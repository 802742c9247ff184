"""The admin dashboard document, live or as of a past instant or ledger position; its active jobs and users by page."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from api.accounts import accounts_document
from api.auth import Identity
from api.context import admin_only
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.ports import Cluster, EventLog, Plans, Port, ServerState, read_views
from api.present import job_status, node_infos
from ledger.clock import now_us, parse_iso
from ledger.settings import Settings
from projections.asof import planned_as_of
from projections.dashboard import dashboard_document, user_rows
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
_POSITION = re.compile(r"[0-9]{1,18}")


def _as_of(text: str) -> tuple[int | None, int | None]:
    """A ledger position (at most 18 digits) or an RFC 3339 time with its offset, exactly as documented."""
    if _POSITION.fullmatch(text):
        return int(text), None
    try:
        moment = msgspec.json.decode(msgspec.json.encode(text), type=datetime)
    except msgspec.ValidationError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRequest(
            "Invalid as_of: give a ledger position (at most 18 digits) or an RFC 3339 time with its offset"
        ) from None
    return None, parse_iso(moment.isoformat())


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
    ) -> dict[str, Any]:
        views, now, plan = await views_at(events, plans, as_of)
        document = dashboard_document(
            views,
            now=now,
            user_id=identity.user_id,
            is_admin=True,
            active_limit=settings.dashboard_active_jobs,
            users_limit=settings.dashboard_users,
            job_view=lambda job: job_status(job, views, plan),
            node_view=lambda: node_infos(views, plan, identity, now),
        )
        document["slurm"] = cluster.slurm_info() if as_of is None else None
        document["disk"] = server.disk_use() if as_of is None else None  # DiskUse: cached, measured in a thread
        # per user: share, caps, usage, factor; for the users inline (all of them: GET /api/admin/users)
        document["fairshare"] = accounts_document(views, now, users=document["user_statistics"], factors=plan.factors)
        return document  # its structs are encoded by the response itself: one pass, not a copy and a pass

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
    ) -> dict[str, Any]:
        views, _, plan = await views_at(events, plans, as_of)
        total, jobs = views.active_page(offset, limit)
        return {"total": total, "offset": offset, "limit": limit, "jobs": [job_status(j, views, plan) for j in jobs]}

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
    ) -> dict[str, Any]:
        views, _, _ = await views_at(events, plans, as_of)
        total, users = views.ranked_users(offset, limit)
        return {"total": total, "offset": offset, "limit": limit, "users": user_rows(users)}
