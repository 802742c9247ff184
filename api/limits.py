"""Request limits per endpoint (a sliding minute), per token's user or, for anonymous requests, per
client address; and the client address itself.

The limiter runs on the event loop between awaits, so its check-and-record is atomic.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from api.addresses import is_trusted_proxy
from api.errors import TooManyRequests

WINDOW_S = 60.0


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """``X-Forwarded-For`` is believed only when the peer is a trusted proxy; then the right-most
    address that is not itself a trusted proxy is the client."""
    peer = peer or "unknown"
    if not forwarded_for or not is_trusted_proxy(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


# The submit limit keeps the old server's exact text (SPEC §4 quotes it; old clients match on it).
SUBMIT_TEXT = "Rate limit exceeded. Maximum {limit} requests per 60s. Retry after {retry}s."
OTHER_TEXT = "Rate limit exceeded for {endpoint} requests {by}: maximum {limit} per 60s. Retry after {retry}s."


class EndpointLimiter:
    """One sliding minute per (endpoint, user) for authenticated callers, per (endpoint, address) for
    anonymous ones: users behind one address (a login node, a NAT) do not share an allowance."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self._hits: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def check(self, endpoint: str, address: str, now: float | None = None, *, user: str | None = None) -> None:
        """429 when the caller (``user`` if authenticated, else ``address``) is over the endpoint's limit."""
        limit = self.limits.get(endpoint)
        if not limit:  # not listed, or 0: unlimited
            return
        now = time.monotonic() if now is None else now
        whose = f"user {user}" if user is not None else f"address {address}"
        hits = self._hits[(endpoint, whose)]
        while hits and hits[0] <= now - WINDOW_S:
            hits.popleft()
        if len(hits) >= limit:
            retry = max(1, math.ceil(hits[0] + WINDOW_S - now))
            text = SUBMIT_TEXT if endpoint == "submit" else OTHER_TEXT
            raise TooManyRequests(
                text.format(endpoint=endpoint, by=("by " if user else "from ") + whose, limit=limit, retry=retry),
                {"Retry-After": str(retry)},
                extra={"rate_limit": endpoint, "limited": whose},
            )
        hits.append(now)
