"""Service endpoints: the root document, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from api.metrics import render_metrics
from api.ports import Port, ServerState
from executors.sandbox import DISABLED_WARNING
from ledger.store.settings import Settings

VERSION = "0.1.0"
ENDPOINTS = {
    "submit": "POST /api/submit",
    "status": "GET /api/status/{job_id}",
    "results": "GET /api/results/{job_id}",
    "cancel": "POST /api/cancel/{job_id}",
    "jobs": "GET /api/jobs",
    "nodes": "GET /api/nodes",
    "quota": "GET /api/quota",
    "whoami": "GET /api/whoami",
    "dashboard": "GET /api/dashboard",
    "dashboard_active": "GET /api/dashboard/active",
    "queue": "GET /api/queue",
    "users": "GET /api/admin/users",
    "user_policy": "POST /api/admin/users/{user_id}/policy",
    "logs": "GET /api/jobs/{job_id}/logs",
    "events": "GET /api/jobs/{job_id}/events",
    "event_stream": "GET /api/events/stream",
    "schema": "GET /schema",
    "web_dashboard": "GET /dashboard",
}


class ServiceController(Controller):
    tags = ["service"]

    @get("/", summary="What this server is")
    async def root(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        # Only what this app really serves (the web dashboard page is a separate part that may be absent).
        paths = {re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path) for route in request.app.routes}
        endpoints = {name: spec for name, spec in ENDPOINTS.items() if spec.split(" ", 1)[1] in paths}
        return {"service": "GPU Job Queue Server", "version": VERSION, "endpoints": endpoints}

    @get("/livez", summary="The process answers")
    async def livez(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/readyz",
        summary="Ledger writable, projections caught up, executors started",
        responses={
            503: ResponseSpec(
                data_container=dict[str, Any], description="Not ready: the checks say why", generate_examples=False
            )
        },
    )
    async def readyz(self, server: Port[ServerState], settings: NamedDependency[Settings]) -> Response[dict[str, Any]]:
        if not server.started:  # still loading the ledger (or its start failed): nothing to check yet
            checks = dict.fromkeys(("ledger_writable", "projections_caught_up", "executors_started"), False)
            status = "start failed" if server.failed else "starting"
            return Response({"status": status, "checks": checks}, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        checks = server.readiness()
        ready = all(checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        body["ledger"] = server.disk_state()  # writable, free bytes, the last write error, the reserve
        body["sandbox"] = settings.sandbox.mode
        if settings.sandbox.mode == "none":
            body["warning"] = DISABLED_WARNING
        replica = server.replica_state()
        if replica is not None:  # reported, never a reason to refuse work
            body["replica"] = replica
        return Response(
            body,
            status_code=200 if ready else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get("/metrics", summary="Prometheus text format", media_type="text/plain; version=0.0.4")
    async def metrics(self, state: State) -> bytes:
        return render_metrics(state.metrics)
