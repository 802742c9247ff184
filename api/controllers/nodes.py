"""Node endpoints: the node list (details by caller) and the admin drain switch."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post

from api.auth import require_admin
from api.context import authenticate, maybe_authenticate, runtime_of
from api.present import node_infos
from api.schemas import NodeInfo, NodeList
from executors.sandbox import DISABLED_WARNING
from ledger import commands
from ledger.clock import now_us


class NodeController(Controller):
    path = "/api"
    tags = ["nodes"]

    @get("/nodes", summary="Nodes, their state, queue figures and current job")
    async def nodes(self, request: Request[Any, Any, Any]) -> NodeList:
        runtime = runtime_of(request)
        views = runtime.ledger.views
        who = maybe_authenticate(request)
        now = now_us()
        mode = runtime.settings.job_sandbox
        return NodeList(
            nodes=node_infos(views, runtime.plans.get(views, now), who, now),
            sandbox=mode,
            sandbox_warning=DISABLED_WARNING if mode == "none" else None,
            slurm=runtime.slurm_info(),
        )

    async def _drain(self, request: Request[Any, Any, Any], node: str, *, drain: bool) -> NodeInfo:
        runtime = runtime_of(request)
        identity = authenticate(request)
        require_admin(identity)
        reason = request.query_params.get("reason", "")
        await runtime.ledger.write(commands.drain_node(node, by=identity.user_id, drain=drain, reason=reason))
        views = runtime.ledger.views
        now = now_us()
        return next(n for n in node_infos(views, runtime.plans.get(views, now), identity, now) if n.name == node)

    @post("/admin/nodes/{node:str}/drain", status_code=200, summary="Stop new dispatches to a node")
    async def drain(self, request: Request[Any, Any, Any], node: str) -> NodeInfo:
        return await self._drain(request, node, drain=True)

    @post("/admin/nodes/{node:str}/undrain", status_code=200, summary="Let a drained node take jobs again")
    async def undrain(self, request: Request[Any, Any, Any], node: str) -> NodeInfo:
        return await self._drain(request, node, drain=False)
