"""Node endpoints: the node list (details by caller) and the admin drain switch."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.auth import Identity
from api.context import admin_only
from api.openapi import BEARER, BEARER_OR_ANONYMOUS, problems
from api.ports import Cluster, LedgerWriter, Plans, Port, read_views
from api.present import node_infos
from api.schemas import NodeInfo, NodeList
from executors.sandbox import DISABLED_WARNING
from ledger.domain.clock import now_us
from ledger.store import commands
from ledger.store.settings import Settings
from projections.views import Views

REASON = Parameter(default="", max_length=500, description="Why (kept in the ledger)")


class NodeController(Controller):
    path = "/api"
    tags = ["nodes"]

    @get(
        "/nodes",
        summary="Nodes, their state, queue figures and current job (details for an authenticated caller)",
        security=BEARER_OR_ANONYMOUS,
        responses=problems(401),
    )
    async def nodes(
        self,
        settings: NamedDependency[Settings],
        cluster: Port[Cluster],
        plans: Port[Plans],
        views: NamedDependency[Views],
        caller: NamedDependency[Identity | None],
    ) -> NodeList:
        now = now_us()
        mode = settings.sandbox.mode
        return NodeList(
            nodes=node_infos(views, plans.get(views, now), caller, now),
            sandbox=mode,
            sandbox_warning=DISABLED_WARNING if mode == "none" else None,
            slurm=cluster.cluster_info(),
        )

    async def _drain(
        self, ledger: LedgerWriter, plans: Plans, identity: Identity, node: str, *, drain: bool, reason: str
    ) -> NodeInfo:
        await ledger.write(commands.drain_node(node, by=identity.user_id, drain=drain, reason=reason))
        views = read_views(ledger)
        now = now_us()
        return next(n for n in node_infos(views, plans.get(views, now), identity, now) if n.name == node)

    @post(
        "/admin/nodes/{node:str}/drain",
        status_code=200,
        guards=[admin_only],
        summary="Stop new dispatches to a node",
        security=BEARER,
        responses=problems(400, 401, 403, 404, 409),
    )
    async def drain(
        self,
        plans: Port[Plans],
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        node: FromPath[str],
        reason: str = REASON,
    ) -> NodeInfo:
        return await self._drain(ledger, plans, identity, node, drain=True, reason=reason)

    @post(
        "/admin/nodes/{node:str}/undrain",
        status_code=200,
        guards=[admin_only],
        summary="Let a drained node take jobs again",
        security=BEARER,
        responses=problems(400, 401, 403, 404, 409),
    )
    async def undrain(
        self,
        plans: Port[Plans],
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        node: FromPath[str],
        reason: str = REASON,
    ) -> NodeInfo:
        return await self._drain(ledger, plans, identity, node, drain=False, reason=reason)
