"""The caller's account: who the token says they are (whoami), and their daily submissions and
GPU-hours, used and left, and when they reset, with their stored artifact bytes and quota (quota)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from api.auth import Identity
from api.context import authenticated
from api.errors import PermissionDenied
from api.openapi import BEARER, problems
from api.present import quota_status
from api.schemas import QuotaStatus, WhoAmI
from api.submit import quota_limits
from ledger.domain.clock import now_us
from ledger.store.settings import Settings
from projections.views import Views


class QuotaController(Controller):
    path = "/api"
    tags = ["quota"]

    @get(
        "/quota",
        guards=[authenticated],
        summary="Your daily quotas: used, left and when they reset (admins: any user's)",
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def quota(
        self,
        settings: NamedDependency[Settings],
        views: NamedDependency[Views],
        identity: NamedDependency[Identity],
        user_id: str | None = Parameter(
            default=None, min_length=1, max_length=128, description="Admins only: another user's quotas"
        ),
    ) -> QuotaStatus:
        who = user_id or identity.user_id
        if who != identity.user_id and not identity.is_admin:
            raise PermissionDenied("Only admins may see another user's quota")
        return quota_status(views, who, quota_limits(settings), now_us(), settings.runner.artifact_quota_bytes)

    @get(
        "/whoami",
        guards=[authenticated],
        summary="Who your token says you are: user, admin or not, and when the token expires",
        security=BEARER,
        responses=problems(401),
    )
    async def whoami(self, identity: NamedDependency[Identity]) -> WhoAmI:
        return WhoAmI(
            user_id=identity.user_id,
            is_admin=identity.is_admin,
            token_id=identity.token_id,
            expires_at=identity.expires_at,
        )
