"""What the server answers before its app exists: ``/livez`` 200, everything else 503 (bind first).

Importing the API (Litestar, the controllers, the executors) and building the Litestar app take most
of a second; uvicorn binds only once its app's lifespan start-up returns. ``BootApp`` is that app: its
start-up returns at once, the socket is bound, and the real app is imported and built in a worker
thread (the loop keeps answering), then its lifespan runs and every request goes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from litestar import Litestar

Message = dict[str, Any]
App = Callable[[dict[str, Any], Callable[[], Any], Callable[[Message], Any]], Any]
CHECKS = ("ledger_writable", "projections_caught_up", "executors_started")  # as /readyz names them


def _json(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> tuple[Message, Message]:
    payload = json.dumps(body).encode()
    head = [(b"content-length", str(len(payload)).encode()), *headers]
    return {"type": "http.response.start", "status": status, "headers": head}, {
        "type": "http.response.body",
        "body": payload,
    }


def starting_answer(path: str, failed: str | None) -> tuple[Message, Message]:
    """The answer to a request that came before the app: the bodies the app itself gives while loading."""
    if path == "/livez":
        return _json(200, {"status": "ok"}, [(b"content-type", b"application/json")])
    if path == "/readyz":
        body = {"status": "start failed" if failed else "starting", "checks": dict.fromkeys(CHECKS, False)}
        return _json(503, body, [(b"content-type", b"application/json")])
    detail = f"start failed: {failed}" if failed else "starting: loading the ledger"
    headers = [(b"content-type", b"application/problem+json"), (b"retry-after", b"1")]
    return _json(503, {"status": 503, "detail": detail}, headers)


class BootApp:
    """The ASGI app uvicorn serves: answers by itself until ``build`` (run in a thread) returns the
    Litestar app and what serves it; ``on_failure`` stops the server when the build fails."""

    def __init__(self, build: Callable[[], tuple[Litestar, App]], on_failure: Callable[[], None]) -> None:
        self._build = build
        self._on_failure = on_failure
        self.built: Litestar | None = None
        self.failed: str | None = None  # why the build failed, for the exit status
        self._served: App | None = None

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if self._served is not None and scope["type"] != "lifespan":
            await self._served(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
        elif scope["type"] == "http":
            for message in starting_answer(scope["path"], self.failed):
                await send(message)
        else:  # a websocket before the app: refused, the client retries
            await send({"type": "websocket.close", "code": 1013})

    async def _run_lifespan(self, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        await receive()  # lifespan.startup: answered at once, so that uvicorn binds now
        stopping = asyncio.Event()
        serving = asyncio.create_task(self._serve(stopping), name="app")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        if self._served is None:  # still building: there is nothing of the app to stop
            serving.cancel()
        stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await send({"type": "lifespan.shutdown.complete"})

    async def _serve(self, stopping: asyncio.Event) -> None:
        """Build the app, then hold its lifespan open until shutdown: in one task, as its task groups need."""
        try:
            app, served = await asyncio.to_thread(self._build)
        except Exception as e:
            self.failed = str(e) or type(e).__name__
            structlog.get_logger().error("server.start_failed", error=self.failed, exc_info=e)
            self._on_failure()
            return
        async with app.lifespan():  # the runtime's start, in the background (``api.app``), and its stop
            self.built, self._served = app, served
            await stopping.wait()
