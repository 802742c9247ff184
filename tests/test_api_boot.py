"""The boot app ``serve`` binds with: answers by itself while the real app is built, then hands over;
a failed build is reported and stops the server."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from litestar import Litestar, get

from api.boot import BootApp

Message = dict[str, Any]


async def fetch(app: Any, path: str) -> tuple[int, dict[str, str], Any]:
    """One GET through the ASGI interface: (status, headers, decoded JSON body)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "method": "GET", "headers": [], "root_path": "",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip
    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


class Lifespan:
    """The server's side of the ASGI lifespan: start-up, then shutdown on ``stop``."""

    def __init__(self, app: Any) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.outgoing: asyncio.Queue[Message] = asyncio.Queue()
        self.task = asyncio.create_task(app({"type": "lifespan"}, self.incoming.get, self.outgoing.put))

    async def start(self) -> str:
        await self.incoming.put({"type": "lifespan.startup"})
        return str((await self.outgoing.get())["type"])

    async def stop(self) -> str:
        await self.incoming.put({"type": "lifespan.shutdown"})
        answer = str((await self.outgoing.get())["type"])
        await self.task
        return answer


def real_app(events: list[str]) -> Litestar:
    """A small Litestar app whose start-up and shutdown hooks say when its lifespan is entered and left."""

    @get("/api/jobs", sync_to_thread=False)
    def jobs() -> dict[str, str]:
        return {"from": "app"}

    return Litestar(
        [jobs],
        on_startup=[lambda: events.append("startup")],
        on_shutdown=[lambda: events.append("shutdown")],
        logging_config=None,
    )


def test_answers_while_building_then_hands_over() -> None:
    """/livez 200, /readyz and the API 503 "starting" until the build returns; then the app answers
    and its lifespan is entered at start and left at shutdown."""

    async def scenario() -> None:
        release = threading.Event()
        events: list[str] = []

        def build() -> tuple[Any, Any]:
            release.wait(10)
            app = real_app(events)
            return app, app

        boot = BootApp(build, on_failure=lambda: None)
        span = Lifespan(boot)
        assert await span.start() == "lifespan.startup.complete"  # at once, before the build
        assert (await fetch(boot, "/livez"))[::2] == (200, {"status": "ok"})
        status, _, body = await fetch(boot, "/readyz")
        assert (status, body["status"]) == (503, "starting")
        status, headers, body = await fetch(boot, "/api/jobs")
        assert (status, body["detail"], headers["retry-after"]) == (503, "starting: loading the ledger", "1")
        release.set()
        while boot.built is None:
            await asyncio.sleep(0.01)
        assert (await fetch(boot, "/api/jobs"))[::2] == (200, {"from": "app"})
        assert await span.stop() == "lifespan.shutdown.complete"
        assert events == ["startup", "shutdown"]

    asyncio.run(scenario())


def test_a_failed_build_is_reported_and_stops_the_server() -> None:
    """An import or set-up error: on_failure runs, /readyz and the API name the reason."""

    async def scenario() -> None:
        stopped = asyncio.Event()

        def build() -> tuple[Any, Any]:
            raise ImportError("no module named litestar")

        boot = BootApp(build, on_failure=stopped.set)
        span = Lifespan(boot)
        await span.start()
        await asyncio.wait_for(stopped.wait(), 10)
        assert boot.failed == "no module named litestar"
        status, _, body = await fetch(boot, "/readyz")
        assert (status, body["status"]) == (503, "start failed")
        assert (await fetch(boot, "/api/jobs"))[2]["detail"] == "start failed: no module named litestar"
        assert await span.stop() == "lifespan.shutdown.complete"

    asyncio.run(scenario())
