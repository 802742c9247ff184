"""The Litestar application: controllers, error mapping, request ids, and the runtime's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, get
from litestar.datastructures import State

from api.context import DEPENDENCIES
from api.controllers.dashboard import DashboardController
from api.controllers.jobs import JobController
from api.controllers.nodes import NodeController
from api.controllers.service import VERSION, ServiceController
from api.controllers.streams import StreamController
from api.edge import HttpEdge
from api.errors import EXCEPTION_HANDLERS
from api.limits import EndpointLimiter
from api.metrics import metrics_registry
from api.openapi import openapi_config
from api.runtime import Runtime
from api.web.controller import dashboard_router
from ledger.settings import Settings

log = structlog.get_logger()


@get("/schema", include_in_schema=False, sync_to_thread=False)
def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI document itself, served locally (no CDN, no internet access needed)."""
    return request.app.openapi_schema.to_schema()


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> Litestar:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        log.info("server.started", nodes=list(runtime.runners))
        try:
            yield
        finally:
            await runtime.stop()
            log.info("server.stopped")

    return Litestar(
        route_handlers=[
            ServiceController,
            JobController,
            NodeController,
            DashboardController,
            StreamController,
            dashboard_router,
            openapi_document,
        ],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State(
            {
                "runtime": runtime,
                "limiter": EndpointLimiter(settings.endpoint_limits),
                "metrics": metrics_registry(runtime),
            }
        ),
        openapi_config=openapi_config(VERSION),
        request_max_body_size=settings.max_code_bytes + settings.max_config_bytes + 1024 * 1024,
        multipart_form_part_limit=16,
        logging_config=None,  # structlog is configured once, by the serve command
    )


def served_app(settings: Settings) -> HttpEdge:
    """What the server runs: the app inside its HTTP edge (request ids, access log, body deadline)."""
    return HttpEdge(
        create_app(settings),  # type: ignore[arg-type]
        body_timeout_s=settings.request_body_timeout_s,
        trusted_proxies=settings.trusted_proxies,
    )
