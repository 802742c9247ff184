"""The HTTP edge, around the whole app: request ids, the access log line, and the body deadline.

It wraps the Litestar app rather than sitting inside it, so requests Litestar answers before any
handler runs (unknown paths, wrong methods) are logged too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from api.errors import RequestTimeout
from api.limits import client_address

log = structlog.get_logger()
IDENTITY_KEY = "identity"  # where the authentication guard leaves the caller, in the scope's state

Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
App = Callable[[dict[str, Any], Receive, Send], Any]


class HttpEdge:
    """Pure ASGI: the access log sees every request, whatever answered it."""

    def __init__(self, app: App, *, body_timeout_s: float, trusted_proxies: list[str]) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.monotonic()
        answer: dict[str, Any] = {"status": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                identity = scope["state"].get(IDENTITY_KEY)
                if getattr(identity, "expires_at", None):  # lets clients warn of a token about to expire
                    message["headers"].append((b"x-token-expires-at", identity.expires_at.encode()))
            await send(message)

        try:
            await self.app(scope, self._bounded(receive), send_with_id)
        except RequestTimeout as e:  # raised where Litestar does not answer it itself
            await self._answer_timeout(send_with_id, answer, e.detail)
        finally:
            self._access_line(scope, answer["status"], time.monotonic() - started)
            structlog.contextvars.clear_contextvars()

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` with one deadline for the whole body; after the body it waits unbounded
        (streaming responses listen on it for the client's disconnect)."""
        deadline = time.monotonic() + self.body_timeout_s
        body_done = False

        async def bounded_receive() -> Any:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                log.info("http.body_timeout", timeout_s=self.body_timeout_s)
                raise RequestTimeout(
                    f"Request body not received within {self.body_timeout_s:g} s: "
                    "send the whole body, as long as Content-Length says"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return bounded_receive

    async def _answer_timeout(self, send: Send, answer: dict[str, Any], detail: str) -> None:
        if answer["status"] is not None:
            return  # a response had begun: nothing more can be said on this connection
        headers = [(b"content-type", b"application/problem+json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": msgspec.json.encode({"status": 408, "detail": detail})})

    def _access_line(self, scope: dict[str, Any], status: int | None, seconds: float) -> None:
        identity = scope.get("state", {}).get(IDENTITY_KEY)
        client = scope.get("client")
        headers = dict(scope.get("headers") or [])
        forwarded = headers.get(b"x-forwarded-for")
        log.info(
            "http.request",
            method=scope.get("method"),
            path=scope.get("path_template") or str(scope.get("path"))[:200],
            status=status,
            duration_ms=round(seconds * 1000, 1),
            token_id=getattr(identity, "token_id", None),
            client=client_address(
                client[0] if client else None,
                forwarded.decode("latin-1") if forwarded else None,
                self.trusted_proxies,
            ),
        )
