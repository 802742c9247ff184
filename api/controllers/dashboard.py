"""The admin dashboard document, live or as of a past instant or ledger position."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from api.auth import Identity
from api.context import admin_only
from api.errors import BadRequest
from api.present import job_status, node_infos
from api.runtime import Runtime
from ledger.clock import now_us, position_or_time
from projections.asof import views_as_of
from projections.dashboard import DAY_US, dashboard_document, recent_and_finished
from projections.plan import make_plan


def _as_of(text: str) -> tuple[int | None, int | None]:
    try:
        return position_or_time(text)
    except ValueError as e:
        raise BadRequest(f"Invalid as_of: {e}") from None


class DashboardController(Controller):
    path = "/api"
    tags = ["dashboard"]

    @get("/dashboard", guards=[admin_only], summary="The admin dashboard document (?as_of=ISO time or ledger position)")
    async def dashboard(self, runtime: Runtime, identity: Identity, as_of: str | None = None) -> dict[str, Any]:
        if as_of is None:
            views, now = runtime.ledger.views, now_us()
            recent = views.newest_jobs(user_id=None, status=None, limit=10)
            finished = views.finished_since(now - DAY_US)
        else:
            position, time_us = _as_of(as_of)
            views = await views_as_of(runtime.ledger.path, position=position, time_us=time_us)
            now = time_us if time_us is not None else views.recorded_at
            recent, finished = recent_and_finished(views, now)
        plan = runtime.plans.get(views, now) if as_of is None else make_plan(views, now)
        document = dashboard_document(
            views,
            now=now,
            user_id=identity.user_id,
            is_admin=True,
            recent=recent,
            finished_24h=finished,
            job_view=lambda job: job_status(job, views, plan),
            node_view=lambda: node_infos(views, plan, identity, now),
        )
        return msgspec.to_builtins(document)  # type: ignore[no-any-return]
