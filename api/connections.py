"""Connections bounded: each request head must arrive whole within a deadline, and open connections
are capped per client address and in total, below the process's descriptor limit.

uvicorn bounds only the idle time after a response (``timeout_keep_alive``): a connection that never
sends a request, or sends its head a byte at a time, stays open for ever, and enough of them take
every descriptor (then every submit fails on its first ``open``). ``guarded_protocol`` is uvicorn's
httptools protocol with both bounds; a connection over a cap is answered 503 and closed at once.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from typing import ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

from api.addresses import is_trusted_proxy
from ledger.store.settings import HttpSettings

log = structlog.get_logger()

# Descriptors kept free of connections for the ledger (a reader per thread), logs, blobs, job pipes and
# SSH: a quarter of the limit, at least this many.
FD_RESERVE_MIN = 64
UNLIMITED_FDS = 1 << 20  # what "unlimited" RLIMIT_NOFILE is taken as
_BUSY_BODY = b'{"status": 503, "detail": "Too many connections open: retry in a second."}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


def connection_cap(configured: int, soft_nofile: int) -> int:
    """The most connections open at once: ``configured`` (0: no own cap), never above what the
    descriptor limit leaves after the reserve."""
    soft = UNLIMITED_FDS if soft_nofile == resource.RLIM_INFINITY else soft_nofile
    room = max(1, soft - max(FD_RESERVE_MIN, soft // 4))
    return min(configured, room) if configured else room


def accept_backlog(total: int, soft_nofile: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one loop turn before
    any is counted (and refused): small enough that a burst fits in the descriptors left free."""
    soft = UNLIMITED_FDS if soft_nofile == resource.RLIM_INFINITY else soft_nofile
    return max(16, min(2048, (soft - total) // 4))


class ConnectionBook:
    """Open connections, in total and per client address (trusted proxies have no per-address cap:
    their connections carry many clients). It runs on the event loop only."""

    def __init__(self, total: int, per_address: int, trusted_proxies: list[str]) -> None:
        self.total = total
        self.per_address = per_address
        self.trusted_proxies = trusted_proxies
        self.open = 0
        self.refused = 0
        self.by_address: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Counts the connection in and says True, or says False (over a cap) and counts nothing."""
        capped = self.per_address and not is_trusted_proxy(address, self.trusted_proxies)
        if self.open >= self.total or (capped and self.by_address[address] >= self.per_address):
            self.refused += 1
            return False
        self.open += 1
        self.by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head deadline and connection caps. A subclass is
    made per server by ``guarded_protocol`` (uvicorn builds protocols from a class and its config)."""

    book: ClassVar[ConnectionBook]
    header_timeout_s: ClassVar[float]
    backlog: ClassVar[int] = 2048  # for uvicorn's ``backlog``
    _address: str | None = None  # set once the connection is counted in
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        address = (get_remote_addr(transport) or ("unknown", 0))[0]
        if not self.book.admit(address):
            refused_connection(address, self.book)
            transport.write(BUSY)
            transport.close()
            return
        self._address = address
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return  # refused: never counted in, never handed to uvicorn
        self.book.release(self._address)
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now, until the next request's head
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_overdue)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        # Closed without an answer: nothing was asked (or not all of it), and a slow sender's
        # connection is the resource being reclaimed.
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def refused_connection(address: str, book: ConnectionBook) -> None:
    """One log line for the first refusal and then every 1000th: a flood must not flood the log."""
    if book.refused % 1000 == 1:
        log.warning(
            "http.connection_refused",
            client=address,
            open=book.open,
            max_connections=book.total,
            max_per_address=book.per_address,
            refused_so_far=book.refused,
        )


def raise_descriptor_limit() -> tuple[int, int]:
    """The soft RLIMIT_NOFILE raised to the hard one (as Go's runtime does): the soft default of 1024
    is a relic of select(), which nothing here uses. Returns the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # some containers refuse: the soft limit stays, and the cap follows it
            return soft, hard
    return hard, hard


def guarded_protocol(http: HttpSettings) -> type[GuardedHttpTools]:
    """The protocol class for this server's settings (and its listen backlog), with its caps logged once."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    book = ConnectionBook(
        connection_cap(http.max_connections, soft),
        http.max_connections_per_address,
        http.trusted_proxies,
    )
    backlog = accept_backlog(book.total, soft)
    log.info(
        "http.connection_limits",
        max_connections=book.total,
        max_per_address=book.per_address,
        rlimit_nofile=soft,
        backlog=backlog,
        header_timeout_s=http.header_timeout_s,
    )
    attributes = {"book": book, "header_timeout_s": http.header_timeout_s, "backlog": backlog}
    return type("ServerHttpTools", (GuardedHttpTools,), attributes)
