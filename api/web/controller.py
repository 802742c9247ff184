"""``GET /dashboard``: the web page, its static assets, and one data endpoint per panel.

Every data endpoint takes ``as_of`` (a ledger position or an ISO time; absent = live), so the time
slider moves every panel at once. The page itself holds no data: it is a static document whose
scripts fetch the panels with the token kept in the tab's sessionStorage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from litestar import Controller, Response, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from api.asofpool import Past, as_document, asof_pool
from api.auth import Identity, check_user_filter
from api.context import admin_only, authenticated, token_if_sent
from api.errors import BadRequest
from api.openapi import HeadStreamOperation
from api.ports import Cluster, EventLog, Plans, Port
from api.web import asof as past
from api.web import panels
from api.web.deps import DEPENDENCIES, When
from api.web.schemas import (
    JobsPanel,
    LanesPanel,
    LedgerSpan,
    NodesPanel,
    QueuePanel,
    SignedIn,
    UsagePanel,
    UserIds,
    UtilisationPanel,
)
from ledger.domain.clock import iso, parse_iso
from ledger.store.settings import Settings
from projections import job_search
from projections.job_search import JobFilter
from projections.views import Views

STATIC = Path(__file__).parent / "static"
PAGES = Path(__file__).parent / "pages"  # outside the static folder: HTML is only ever served with its CSP
# No inline script or style anywhere: an injected tag can neither run nor restyle the page.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Window = Parameter(default=3600, ge=60, le=30 * 86_400, description="seconds before as_of")
Status = Literal["pending", "running", "completed", "failed", "cancelled"]
KEEPALIVE_S = 15.0


async def ledger_positions(events: EventLog) -> AsyncIterator[ServerSentEventMessage]:
    """The head position each time it moves (woken by the commit, never by polling), nothing else."""
    position = events.head
    while True:
        head = await events.wait_beyond(position, timeout=KEEPALIVE_S)
        if head > position:
            position = head
            yield ServerSentEventMessage(event="position", id=str(head), data=f'{{"position": {head}}}')
        else:
            yield ServerSentEventMessage(comment="keep-alive")


def _instant(name: str, text: str | None) -> int | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise BadRequest(f"Invalid {name}: {text!r} is not an ISO-8601 time") from None


def _page(name: str) -> Response[bytes]:
    return Response((PAGES / name).read_bytes(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


class DashboardPage(Controller):
    path = "/dashboard"
    tags = ["web dashboard"]
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return _page("index.html")

    @get("/baseline", sync_to_thread=False)
    def baseline(self) -> Response[bytes]:
        """A static page of the same app: the speed benchmark's yardstick."""
        return _page("baseline.html")


class DashboardData(Controller):
    path = "/dashboard/data"
    tags = ["web dashboard"]
    dependencies = DEPENDENCIES
    guards = [token_if_sent]  # guards run before parameters are parsed: authentication comes first

    @get("/ledger", summary="Ledger head and time span (the slider's range)", sync_to_thread=False)
    def ledger(self, events: Port[EventLog], caller: NamedDependency[Identity | None]) -> LedgerSpan:
        reader = events.reader
        head = events.head
        first = reader.execute("SELECT recorded_at FROM events WHERE position = 1").fetchone()
        last = reader.execute("SELECT recorded_at FROM events WHERE position = ?", (head,)).fetchone()
        return LedgerSpan(
            head=head,
            first_at=iso(first[0]) if first else None,
            head_at=iso(last[0]) if last else None,
            signed_in=None if caller is None else SignedIn(user_id=caller.user_id, is_admin=caller.is_admin),
        )

    @get(
        "/changes",
        summary="SSE of the ledger's head position (no event contents: anyone may follow it)",
        operation_class=HeadStreamOperation,
    )
    async def changes(self, events: Port[EventLog], caller: NamedDependency[Identity | None]) -> ServerSentEvent:
        return ServerSentEvent(ledger_positions(events))

    @get("/nodes", summary="Nodes now (or as of): state, reason, current job, slots")
    async def nodes(
        self,
        moment: When,
        caller: NamedDependency[Identity | None],
        cluster: Port[Cluster],
        state: State,
    ) -> NodesPanel:
        if isinstance(moment, Past):
            return as_document(await asof_pool(state).document(past.nodes, moment, caller), NodesPanel)
        return panels.nodes_panel(moment, caller, cluster.cluster_info())

    @get("/queue", summary="Pending jobs in order with reasons and estimates; the per-node plan")
    async def queue(
        self,
        moment: When,
        caller: NamedDependency[Identity | None],
        plans: Port[Plans],
        events: Port[EventLog],
        settings: NamedDependency[Settings],
        state: State,
    ) -> QueuePanel:
        limit = settings.reads.dashboard_active_jobs
        if isinstance(moment, Past):
            return as_document(await asof_pool(state).document(past.queue, moment, caller, limit), QueuePanel)
        # The page fetches this panel on each ledger change: a job queued by that change waits for the
        # next plan (as a status read does), or it would show no place and no factors until the next change.
        views, plan = moment.views, moment.plan
        missing = next((j for j in views.queued_since(plan.jobs, plan.made_at) if j not in plan.jobs), None)
        if moment.live and missing is not None:
            plan = await plans.including(views.jobs[missing], views, events.head)
            moment = dataclasses.replace(moment, plan=plan)
        return panels.queue_panel(moment, caller, limit)

    @get(
        "/jobs",
        summary="Jobs, newest first, filtered and paginated from indexes",
        guards=[authenticated],
    )
    async def jobs(
        self,
        events: Port[EventLog],
        identity: NamedDependency[Identity],
        moment: When,
        state: State,
        user: FromQuery[str | None] = None,
        status: FromQuery[Status | None] = None,
        competition: FromQuery[str | None] = None,
        node: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        before: int | None = Parameter(default=None, ge=1),
        limit: int = Parameter(default=25, ge=1, le=200),
    ) -> JobsPanel:
        flt = JobFilter(
            user_id=check_user_filter(identity, user or None),
            status=status,
            competition_id=competition or None,
            node=node or None,
            since_us=_instant("since", since),
            until_us=_instant("until", until),
            before=before,
        )
        if isinstance(moment, Past):
            return as_document(await asof_pool(state).document(past.jobs, moment, flt, limit), JobsPanel)
        reader, jobs = events.reader, moment.views.jobs
        candidates = [jobs.get(i) for i in job_search.page_ids(reader, flt, 2 * limit + 10)]
        total = job_search.counted(moment.views, flt)  # kept by the fold: no count of rows
        if total is None:
            total = job_search.count(reader, flt)
        return panels.jobs_panel(moment, candidates, flt, limit, total)

    @get("/lanes", summary="Per-node wait and run segments over a window")
    async def lanes(
        self,
        moment: When,
        caller: NamedDependency[Identity | None],
        settings: NamedDependency[Settings],
        state: State,
        window: int = Window,
    ) -> LanesPanel:
        queued = settings.reads.dashboard_active_jobs
        if isinstance(moment, Past):
            return as_document(await asof_pool(state).document(past.lanes, moment, caller, window, queued), LanesPanel)
        return panels.lanes_panel(moment, caller, window, queued)

    @get("/utilisation", summary="Share of busy slots over a window")
    async def utilisation(
        self,
        moment: When,
        state: State,
        window: int = Window,
        buckets: int = Parameter(default=60, ge=2, le=500),
    ) -> UtilisationPanel:
        if isinstance(moment, Past):
            return as_document(
                await asof_pool(state).document(past.utilisation, moment, window, buckets), UtilisationPanel
            )
        return panels.utilisation_panel(moment, window, buckets)

    @get(
        "/usage",
        summary="Per-user jobs, GPU-hours and success rate over a window",
        guards=[authenticated],
    )
    async def usage(
        self,
        moment: When,
        identity: NamedDependency[Identity],
        state: State,
        window: int = Window,
    ) -> UsagePanel:
        if isinstance(moment, Past):
            return as_document(await asof_pool(state).document(past.usage, moment, identity, window), UsagePanel)
        return panels.usage_panel(moment, identity, window)

    @get("/users", summary="Every user id (the jobs filter's choices)", guards=[admin_only], sync_to_thread=False)
    def users(self, views: NamedDependency[Views]) -> UserIds:
        return UserIds(users=sorted(views.users))


dashboard_router = Router(
    path="/",
    route_handlers=[
        DashboardPage,
        DashboardData,
        create_static_files_router(path="/dashboard/static", directories=[STATIC], include_in_schema=False),
    ],
)
