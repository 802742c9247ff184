"""The Litestar application: controllers, error mapping, request ids, and the runtime's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from api.controllers.dashboard import DashboardController
from api.controllers.jobs import JobController
from api.controllers.nodes import NodeController
from api.controllers.service import VERSION, ServiceController
from api.controllers.streams import StreamController
from api.errors import EXCEPTION_HANDLERS, problem
from api.limits import EndpointLimiter
from api.metrics import metrics_registry
from api.runtime import Runtime
from api.web.controller import dashboard_router
from ledger.settings import Settings

log = structlog.get_logger()


class RequestContext(ASGIMiddleware):
    """Every request gets an id, bound into the log context and echoed in ``X-Request-ID``."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_id = uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id, path=scope.get("path"))

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await next_app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


@get("/schema", include_in_schema=False, sync_to_thread=False)
def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI document itself, served locally (no CDN, no internet access needed)."""
    return request.app.openapi_schema.to_schema()


async def _at_once() -> None:
    return None


async def start_in_background(
    runtime: Runtime, on_failure: Callable[[], None], listening: Callable[[], Awaitable[None]] = _at_once
) -> None:
    """Start the runtime once the server listens (loading competes for the GIL with binding); a failure
    is logged and ``on_failure`` stops the server (``serve`` exits 1)."""
    try:
        await listening()
        await runtime.start()
    except Exception as e:
        runtime.failed = str(e) or type(e).__name__
        log.error("server.start_failed", error=runtime.failed, exc_info=e)
        on_failure()
        return
    log.info("server.started", nodes=list(runtime.runners))


UNGATED = frozenset({"/livez", "/readyz"})


async def until_ready(request: Request[Any, Any, Any]) -> Response[dict[str, object]] | None:
    """Every endpoint but liveness and readiness answers 503 while the ledger loads."""
    runtime: Runtime = request.app.state.runtime
    if runtime.started or request.url.path in UNGATED:
        return None
    detail = f"start failed: {runtime.failed}" if runtime.failed else "starting: loading the ledger"
    return problem(503, detail, {"Retry-After": "1"})


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    on_start_failure: Callable[[], None] = lambda: None,
    listening: Callable[[], Awaitable[None]] = _at_once,
) -> Litestar:
    """``on_start_failure`` is how the runtime's failed start stops the server that hosts the app;
    ``listening`` returns once that server has bound its socket."""
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The runtime starts after uvicorn binds: /livez answers at once, the rest 503 until ready.
        starting = asyncio.create_task(start_in_background(runtime, on_start_failure, listening), name="runtime-start")
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
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
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[RequestContext()],
        before_request=until_ready,
        lifespan=[lifespan],
        state=State(
            {
                "runtime": runtime,
                "limiter": EndpointLimiter(settings.endpoint_limits),
                "metrics": metrics_registry(runtime),
            }
        ),
        openapi_config=OpenAPIConfig(
            title="gpuledger", version=VERSION, path="/openapi", render_plugins=[JsonRenderPlugin()]
        ),
        request_max_body_size=settings.max_code_bytes + settings.max_config_bytes + 1024 * 1024,
        multipart_form_part_limit=16,
        logging_config=None,  # structlog is configured once, by the serve command
    )
