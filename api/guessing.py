"""Online guessing bounded: too many failed authentications from one client address, and its
requests that carry a credential are answered 429 (with ``Retry-After``) without being checked.

Tokens that already authenticated from that address keep working while it is blocked, so a script
retrying a revoked token (or one guesser) on a shared login node does not lock its colleagues out.
That exemption is itself bounded: after ``KNOWN_GRACE`` times the limit of refused attempts in one
block, known tokens wait too, so a guesser cannot try the known tokens at full speed either.
Tokens sent from any other address are never affected.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from api.edge import IDENTITY_KEY
from api.limits import client_address

log = structlog.get_logger()

KNOWN_FOR_S = 86_400.0  # how long a token that authenticated from an address counts as known there
KNOWN_PER_ADDRESS = 16  # tokens remembered per address (a login node's users), the oldest dropped first
KNOWN_GRACE = 10  # refused attempts per block, in units of the limit, before known tokens wait too
MAX_ADDRESSES = 50_000  # addresses remembered at once, each table; the stalest are dropped first

Message = dict[str, Any]
App = Callable[[dict[str, Any], Callable[[], Any], Callable[[Message], Any]], Any]


class FailedAuthentications:
    """Failures per address in a sliding window, and the tokens known good from each address.

    Every method takes ``now`` (monotonic seconds): the bookkeeping is pure of clocks and I/O."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._known: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._refused: dict[str, int] = {}

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until ``address`` may try again; None when it is not blocked."""
        failures = self._failures.get(address)
        if not self.limit or failures is None or len(failures) < self.limit:
            return None
        ends = failures[0] + self.window_s
        if ends <= now:
            self._refused.pop(address, None)
            return None
        return max(1, math.ceil(ends - now))

    def admit(self, address: str, digest: str | None, now: float) -> int | None:
        """None: check the credential. Otherwise the request is refused: seconds to wait."""
        retry = self.retry_after(address, now)
        if retry is None:
            return None
        refused = self._refused.get(address, 0)
        known_at = self._known.get(address, {}).get(digest or "", -math.inf)
        if now - known_at < KNOWN_FOR_S and refused < KNOWN_GRACE * self.limit:
            return None
        self._refused[address] = refused + 1
        return retry

    def failed(self, address: str, digest: str | None, now: float) -> None:
        if not self.limit:
            return
        failures = self._failures.pop(address, None) or deque(maxlen=self.limit)
        failures.append(now)
        self._failures[address] = failures  # most recent last: the stalest are dropped first
        self._known.get(address, {}).pop(digest or "", None)
        _bound(self._failures)

    def succeeded(self, address: str, digest: str, now: float) -> None:
        known = self._known.pop(address, None) or {}
        known.pop(digest, None)
        known[digest] = now
        while len(known) > KNOWN_PER_ADDRESS:
            del known[next(iter(known))]
        self._known[address] = known
        _bound(self._known)


def _bound(table: OrderedDict[str, Any]) -> None:
    while len(table) > MAX_ADDRESSES:
        table.popitem(last=False)


def credential_digest(headers: list[tuple[bytes, bytes]]) -> str | None:
    """SHA-256 of the raw ``Authorization`` header value, or None when none is sent."""
    for name, value in headers:
        if name == b"authorization":
            return hashlib.sha256(value.strip()).hexdigest()
    return None


class GuessThrottle:
    """Pure ASGI, inside the HTTP edge: refuses blocked addresses' credentials before the app sees
    them, and learns from the app's answers (a 401 is a failure, an established identity a success)."""

    def __init__(self, app: App, book: FailedAuthentications, *, trusted_proxies: list[str]) -> None:
        self.app = app
        self.book = book
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        digest = credential_digest(scope.get("headers") or [])
        # Old clients put their token in the submit's config: a submit may authenticate without a header.
        config_token = scope.get("method") == "POST" and scope.get("path") == "/api/submit"
        if scope["type"] != "http" or not self.book.limit or (digest is None and not config_token):
            await self.app(scope, receive, send)
            return
        address = self._address(scope)
        retry = self.book.admit(address, digest, time.monotonic())
        if retry is not None:
            await _refuse(send, retry, address)
            return

        async def learning_send(message: Message) -> None:
            if message["type"] == "http.response.start":  # learnt at once: a stream may last hours
                self._learn(scope, address, digest, message["status"])
            await send(message)

        await self.app(scope, receive, learning_send)

    def _learn(self, scope: dict[str, Any], address: str, digest: str | None, status: int) -> None:
        now = time.monotonic()
        if status == 401:
            self.book.failed(address, digest, now)
            if self.book.retry_after(address, now) is not None:
                log.warning("auth.throttled", client=address, failures=self.book.limit)
        elif digest is not None and scope.get("state", {}).get(IDENTITY_KEY) is not None:
            self.book.succeeded(address, digest, now)

    def _address(self, scope: dict[str, Any]) -> str:
        client = scope.get("client")
        forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-for")
        return client_address(
            client[0] if client else None,
            forwarded.decode("latin-1") if forwarded else None,
            self.trusted_proxies,
        )


async def _refuse(send: Callable[[Message], Any], retry: int, address: str) -> None:
    detail = (
        "Too many failed authentications from this address. "
        f"Retry after {retry}s (tokens that already worked from here still do)."
    )
    body = msgspec.json.encode(
        {"status": 429, "detail": detail, "rate_limit": "authentication", "limited": f"address {address}"}
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
