"""Fair-share endpoints: the scored queue (live or as of a point) and the admin's user policy switch."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Parameter

from api import pastdocs
from api.accounts import account_view, accounts_document, competing_factors, queue_document
from api.asofpool import as_document, asof_pool
from api.auth import Identity
from api.context import admin_only, authenticated, limited
from api.controllers.dashboard import AS_OF, past_point, views_now
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.ports import EventLog, LedgerWriter, Plans, Port, read_views
from api.schemas import Account, Accounts, QueueDocument
from ledger.domain.clock import now_us
from ledger.domain.shares import USER_ID_PATTERN, valid_user_id
from ledger.store import commands
from projections.views import Views

CAP = Parameter(
    default=None,
    pattern=r"^([0-9]{1,6}|default)$",
    description="A cap (0: unlimited), or 'default' for the global limit",
)


def _cap(name: str, text: str | None) -> dict[str, int | None]:
    if text is None:
        return {}
    return {name: None if text == "default" else int(text)}


class FairShareController(Controller):
    path = "/api"
    tags = ["fair share"]

    @get(
        "/queue",
        guards=[limited("jobs", then=authenticated)],
        summary="The queue in dispatch order with each job's score and factors (?as_of=position or time)",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 429),
    )
    async def queue(
        self,
        plans: Port[Plans],
        events: Port[EventLog],
        identity: NamedDependency[Identity],
        state: State,
        as_of: str | None = AS_OF,
        offset: int = Parameter(default=0, ge=0, le=10**9),
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> QueueDocument:
        past = past_point(events, plans, as_of)
        if past is not None:  # replayed in an as-of child, answered as its bytes
            return as_document(
                await asof_pool(state).document(pastdocs.queue, past, identity, offset, limit), QueueDocument
            )
        views, now, plan = views_now(events, plans)
        return queue_document(views, plan, now, identity, live=True, offset=offset, limit=limit)

    @get(
        "/admin/users",
        guards=[admin_only],
        summary="Every user's fair-share account: share, priority, caps, decayed usage, factor",
        operation_class=Documented,
        security=BEARER,
        responses=problems(401, 403),
    )
    async def accounts(self, plans: Port[Plans], views: NamedDependency[Views]) -> Accounts:
        now = now_us()
        # the factors of the current plan (made off the loop), not a walk of the whole queue per request
        return accounts_document(views, now, factors=plans.get(views, now).factors)

    @post(
        "/admin/users/{user_id:str}/policy",
        status_code=200,
        guards=[admin_only],
        summary="Set a user's share, priority level or caps (a user.policy_set event; fields left out stay)",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def set_policy(
        self,
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        user_id: str = Parameter(pattern=USER_ID_PATTERN, description="The user (1..128 characters, no spaces)"),
        # Text with a pattern, not float | None: Litestar would read "share=null" as no share given.
        share: str | None = Parameter(
            default=None,
            pattern=r"^([1-9][0-9]{0,5}(\.[0-9]{1,6})?|0\.[0-9]{0,5}[1-9])$",
            description="The user's share, above 0 and below 1000000 (default 1)",
        ),
        priority: str | None = Parameter(
            default=None, pattern=r"^(-?[0-9]|-?10)$", description="The highest level their jobs get, -10 to 10"
        ),
        max_active_jobs: str | None = CAP,
        max_gpus: str | None = CAP,
        reason: str = Parameter(default="", max_length=500, description="Why (kept in the ledger)"),
    ) -> Account:
        if not valid_user_id(user_id):
            raise BadRequest("Invalid path parameter user_id: 1..128 characters, no spaces or control characters")
        changes: dict[str, Any] = {**_cap("max_active_jobs", max_active_jobs), **_cap("max_gpus", max_gpus)}
        if share is not None:
            changes["share"] = float(share)
        if priority is not None:
            changes["priority"] = int(priority)
        if changes:  # none named: nothing changes and no event is written; the answer is the account as it is
            await ledger.write(commands.set_user_policy(user_id, by=identity.user_id, reason=reason, **changes))
        views, now = read_views(ledger), now_us()
        return account_view(views, user_id, now, competing_factors(views, now))
