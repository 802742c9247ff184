"""The Litestar application: controllers, dependencies, error mapping, the runtime's lifespan, its HTTP edge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin

from api.asofpool import AsOfPool, close_asof_pool
from api.context import DEPENDENCIES
from api.controllers.arrays import ArrayController
from api.controllers.artifacts import ArtifactController
from api.controllers.dashboard import DashboardController
from api.controllers.fairshare import FairShareController
from api.controllers.gpu import GpuController, UsageController
from api.controllers.jobfiles import JobFilesController
from api.controllers.jobs import JobController
from api.controllers.nodes import NodeController
from api.controllers.notify import NotifyController
from api.controllers.quota import QuotaController
from api.controllers.service import VERSION, ServiceController
from api.controllers.streams import StreamController
from api.downloads import Downloads
from api.edge import HttpEdge
from api.errors import EXCEPTION_HANDLERS, ServiceUnavailable
from api.guessing import FailedAuthentications, GuessThrottle
from api.limits import EndpointLimiter
from api.metrics import metrics_registry
from api.openapi import openapi_config
from api.runtime import Runtime
from api.web.controller import dashboard_router
from ledger.store.settings import Settings

log = structlog.get_logger()


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


class LedgerApp(Litestar):
    """Litestar with only the msgspec plugin: the API has no pydantic or attrs models, and Litestar
    would otherwise import its pydantic plugins (0.1-0.2 s of every start, before /readyz) merely
    because some other package in the environment installed pydantic."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        return [*plugins, MsgspecDIPlugin()]


async def until_ready(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The app's first guard: every endpoint but liveness and readiness answers 503 while the ledger
    loads (before any other guard, which would look the caller up in views not there yet)."""
    runtime: Runtime = connection.app.state.runtime
    if runtime.started or connection.url.path in UNGATED:
        return
    detail = f"start failed: {runtime.failed}" if runtime.failed else "starting: loading the ledger"
    raise ServiceUnavailable(detail, {"Retry-After": "1"})


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
            await asyncio.to_thread(close_asof_pool, app.state)  # the as-of children, if any started
            log.info("server.stopped")

    return LedgerApp(
        route_handlers=[
            ServiceController,
            JobController,
            ArrayController,
            JobFilesController,
            GpuController,
            UsageController,
            ArtifactController,
            NodeController,
            QuotaController,
            DashboardController,
            FairShareController,
            NotifyController,
            StreamController,
            dashboard_router,
            openapi_document,
        ],
        dependencies=DEPENDENCIES,
        guards=[until_ready],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State(
            {
                "runtime": runtime,
                "limiter": EndpointLimiter(settings.http.endpoint_limits),
                "downloads": Downloads(settings.http.download_concurrency, settings.http.download_bytes_per_minute),
                "metrics": metrics_registry(runtime),
                "asof_pool": AsOfPool(settings.reads.asof_workers),  # as-of documents, rendered in children
            }
        ),
        openapi_config=openapi_config(VERSION),
        request_max_body_size=max(settings.queue.max_code_bytes, settings.queue.project_max_bytes)
        + settings.queue.max_config_bytes
        + 1024 * 1024,
        multipart_form_part_limit=16,
        logging_config=None,  # structlog is configured once, by the serve command
    )


def served_app(app: Litestar, settings: Settings) -> HttpEdge:
    """What the server runs: the app inside its HTTP edge (request ids, access log, body deadline) and
    the failed-authentication throttle (inside the edge, so that its 429s are logged too)."""
    failures = FailedAuthentications(settings.http.auth_failure_limit, settings.http.auth_failure_window_s)
    throttled = GuessThrottle(app, failures, trusted_proxies=settings.http.trusted_proxies)  # type: ignore[arg-type]
    return HttpEdge(
        throttled,
        body_timeout_s=settings.http.request_body_timeout_s,
        trusted_proxies=settings.http.trusted_proxies,
    )
