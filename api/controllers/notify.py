"""A user's default notify targets: read and set by the user themself (docs/user-guide.md, "Told when a job
ends"). The targets are checked as a job's own are at submit: a 400 names a refused one."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get, put, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import JSONBody

from api.auth import Identity
from api.context import authenticated
from api.errors import BadRequest
from api.openapi import BEARER, Documented, problems
from api.ports import LedgerWriter, Port, read_views
from api.schemas import NotifyDefault, NotifyTargets
from executors.notify.targets import check_all
from ledger.domain.errors import DomainError
from ledger.store.notifications import set_default
from ledger.store.settings import Settings
from projections.views import Views


def _current(views: Views, user_id: str) -> NotifyDefault:
    account = views.shares.get(user_id)
    return NotifyDefault(user_id=user_id, targets=account.notify if account is not None else [])


class NotifyController(Controller):
    path = "/api/me"
    tags = ["notifications"]

    # Litestar 2 builds a path's automatic OPTIONS answer from the route of its first handler (by name)
    # only, so it would leave PUT out of ``Allow``: this path answers OPTIONS itself, from the handler
    # whose name sorts first, so no automatic one is made.
    @route("/notify", http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)
    def allowed_methods(self) -> Response[None]:
        return Response(content=None, status_code=204, headers={"Allow": "GET, OPTIONS, PUT"})

    @get(
        "/notify",
        guards=[authenticated],
        summary="Your default notify targets (used by jobs whose config names none)",
        operation_class=Documented,
        security=BEARER,
        responses=problems(401),
    )
    async def get_default(self, views: NamedDependency[Views], identity: NamedDependency[Identity]) -> NotifyDefault:
        return _current(views, identity.user_id)

    @put(
        "/notify",
        guards=[authenticated],
        summary="Set your default notify targets (a user.notify_set event; an empty list clears them)",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401),
    )
    async def set_default(
        self,
        settings: NamedDependency[Settings],
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        data: JSONBody[NotifyTargets],
    ) -> NotifyDefault:
        allowed, user = settings.notify.allowed, identity.user_id
        try:  # apprise's first import and its URL parsing: off the event loop
            await asyncio.to_thread(check_all, data.targets, allowed)
        except DomainError as e:
            raise BadRequest(str(e)) from e
        await ledger.write(set_default(user, data.targets, by=user, actor=identity.token_id, allowed=allowed))
        return _current(read_views(ledger), user)
