"""One SSE session: ends when its token is revoked or expires, beats while quiet, ends quietly.

A stream source yields messages, or ``None`` each time it has waited (at most ``WAKE_S``) with
nothing to send; the session then checks the caller's token and sends a heartbeat comment when
nothing was sent for ``SSE_HEARTBEAT_S``, so clients and proxies can tell quiet from dead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import structlog
from litestar.response import ServerSentEventMessage

from api.auth import Identity
from projections.views import Views

log = structlog.get_logger()
WAKE_S = 0.5  # the longest a source waits before yielding None: revocation and expiry end a stream within it
HEARTBEAT = ServerSentEventMessage(comment="heartbeat", data=None)


def token_valid(views: Views, identity: Identity) -> bool:
    token = views.tokens.get(identity.token_id)
    if token is None or token.revoked:
        return False
    return datetime.fromisoformat(token.expires_at) > datetime.now(UTC)


async def session(
    source: AsyncGenerator[ServerSentEventMessage | None, None],
    *,
    views: Callable[[], Views],
    identity: Identity,
    heartbeat_s: float,
    name: str,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """The source's messages while the caller's token holds, with heartbeats in quiet times."""
    last_sent = time.monotonic()
    reason = "end"
    try:
        async for message in source:
            if not token_valid(views(), identity):
                reason = "token no longer valid"
                return
            if message is not None:
                yield message
            elif time.monotonic() - last_sent >= heartbeat_s:
                yield HEARTBEAT
            else:
                continue
            last_sent = time.monotonic()
            # One turn of the loop lets a closed connection be noticed before the next write.
            await asyncio.sleep(0)
    except (asyncio.CancelledError, GeneratorExit):
        reason = "client gone or server stopping"
        raise
    finally:
        await source.aclose()
        log.debug("sse.closed", stream=name, reason=reason, token_id=identity.token_id)
