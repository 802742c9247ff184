"""The admin dashboard document, live or as of a past instant or ledger position, and its active jobs by page."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from api.auth import require_admin
from api.context import authenticate, runtime_of
from api.errors import BadRequest
from api.present import job_status, node_infos
from ledger.clock import now_us, position_or_time
from projections.asof import planned_as_of
from projections.dashboard import dashboard_document
from projections.plan import Plan
from projections.views import Views


def _as_of(text: str) -> tuple[int | None, int | None]:
    try:
        return position_or_time(text)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None


async def _views_at(request: Request[Any, Any, Any], as_of: str | None) -> tuple[Views, int, Plan]:
    """The live views and plan, or those as of a point (replayed in a worker thread)."""
    runtime = runtime_of(request)
    if as_of is None:
        views, now = runtime.ledger.views, now_us()
        return views, now, runtime.plans.get(views, now)
    position, time_us = _as_of(as_of)
    return await planned_as_of(runtime.ledger.path, position=position, time_us=time_us)


class DashboardController(Controller):
    path = "/api"
    tags = ["dashboard"]

    @get("/dashboard", summary="The admin dashboard document (?as_of=ISO time or ledger position)")
    async def dashboard(self, request: Request[Any, Any, Any], as_of: str | None = None) -> dict[str, Any]:
        identity = authenticate(request)
        require_admin(identity)
        views, now, plan = await _views_at(request, as_of)
        document = dashboard_document(
            views,
            now=now,
            user_id=identity.user_id,
            is_admin=True,
            active_limit=runtime_of(request).settings.dashboard_active_jobs,
            job_view=lambda job: job_status(job, views, plan),
            node_view=lambda: node_infos(views, plan, identity, now),
        )
        document["slurm"] = runtime_of(request).slurm_info() if as_of is None else None
        return msgspec.to_builtins(document)  # type: ignore[no-any-return]

    @get("/dashboard/active", summary="The dashboard's active jobs, oldest first, one page at a time")
    async def active(
        self,
        request: Request[Any, Any, Any],
        as_of: str | None = None,
        offset: int = Parameter(default=0, ge=0),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        identity = authenticate(request)
        require_admin(identity)
        views, _, plan = await _views_at(request, as_of)
        total, jobs = views.active_page(offset, limit)
        page = {"total": total, "offset": offset, "limit": limit, "jobs": [job_status(j, views, plan) for j in jobs]}
        return msgspec.to_builtins(page)  # type: ignore[no-any-return]
