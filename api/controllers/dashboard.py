"""The admin dashboard document, live or as of a past instant or ledger position."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from api.auth import Identity
from api.context import admin_only
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.present import job_status, node_infos
from api.runtime import Runtime
from ledger.clock import now_us, parse_iso
from projections.asof import views_as_of
from projections.dashboard import DAY_US, dashboard_document, recent_and_finished
from projections.plan import make_plan

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
    async def dashboard(self, runtime: Runtime, identity: Identity, as_of: str | None = AS_OF) -> dict[str, Any]:
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
