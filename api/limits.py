"""Per-client-address request limits per endpoint (a sliding minute), and the client address itself.

The limiter runs on the event loop between awaits, so its check-and-record is atomic.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import defaultdict, deque

from api.errors import TooManyRequests

WINDOW_S = 60.0


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """``X-Forwarded-For`` is believed only when the peer is a trusted proxy; then the right-most
    address that is not itself a trusted proxy is the client."""
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


class EndpointLimiter:
    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self._hits: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def check(self, endpoint: str, address: str, now: float | None = None) -> None:
        limit = self.limits.get(endpoint)
        if not limit:  # not listed, or 0: unlimited
            return
        now = time.monotonic() if now is None else now
        hits = self._hits[(endpoint, address)]
        while hits and hits[0] <= now - WINDOW_S:
            hits.popleft()
        if len(hits) >= limit:
            retry = max(1, math.ceil(hits[0] + WINDOW_S - now))
            raise TooManyRequests(
                f"Rate limit exceeded. Maximum {limit} requests per 60s. Retry after {retry}s.",
                {"Retry-After": str(retry)},
            )
        hits.append(now)
