"""The one retry policy of the executors: exponential backoff with jitter (stamina), on transient errors.

A node that does not answer is retried until ``NODE_LOST_AFTER``; then the step raises ``NodeLost``
and the runner decides what that means for the job. A step that is only ever worth finishing (the
clean-up of a job lost with its node) retries without a deadline, at most a minute apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina
import structlog

from executors.errors import NodeLost, NodeUnreachable

log = structlog.get_logger()
T = TypeVar("T")


async def until_lost(step: Callable[[], Awaitable[T]], *, node: str, lost_after_s: float) -> T:
    """Run ``step``, retrying while it raises ``NodeUnreachable``; ``NodeLost`` after ``lost_after_s``."""
    try:
        async for attempt in stamina.retry_context(
            on=NodeUnreachable, attempts=None, timeout=lost_after_s, wait_initial=0.2, wait_max=5.0
        ):
            with attempt:
                if attempt.num > 1:
                    log.info("node.retry", node=node, attempt=attempt.num)
                return await step()
    except NodeUnreachable as e:
        raise NodeLost(str(e)) from e
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover


async def until_done(step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step``, retrying while it raises ``NodeUnreachable``, with no deadline."""
    async for attempt in stamina.retry_context(
        on=NodeUnreachable, attempts=None, timeout=None, wait_initial=1.0, wait_max=60.0
    ):
        with attempt:
            return await step()
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
