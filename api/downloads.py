"""Full-output downloads: streamed from disk in chunks, so many at once are bounded (and each token's bytes).

A download's memory is one chunk, whatever the output's size; ``DOWNLOAD_CONCURRENCY`` of them stream
at once (more get 503 with Retry-After) and a token may take ``DOWNLOAD_BYTES_PER_MINUTE`` bytes in a
sliding minute (more gets 429 with Retry-After). Admission runs on the event loop between awaits, so
its check-and-record is atomic.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import weakref
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from api.errors import ServiceUnavailable, TooManyRequests

CHUNK = 256 * 1024
WINDOW_S = 60.0
BUSY_RETRY_S = 2  # what a refused download is told to wait for a free stream


class Downloads:
    """The streams in flight and each token's bytes over the last minute."""

    def __init__(self, concurrency: int, bytes_per_minute: int) -> None:
        self.concurrency, self.bytes_per_minute = concurrency, bytes_per_minute
        self.active = 0
        self._spent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def admit(self, token_id: str, size: int, now: float | None = None) -> Lease:
        """Take a stream for ``size`` bytes, or raise 503 (all streams busy) / 429 (token over budget)."""
        if self.active >= self.concurrency:
            raise ServiceUnavailable(
                f"{self.concurrency} downloads are streaming already; retry in {BUSY_RETRY_S} s",
                {"Retry-After": str(BUSY_RETRY_S)},
            )
        now = time.monotonic() if now is None else now
        spent = self._spent[token_id]
        while spent and spent[0][0] <= now - WINDOW_S:
            spent.popleft()
        used = sum(n for _, n in spent)
        # A first download is always let through, however big: the limit is on repeating it.
        if self.bytes_per_minute and used and used + size > self.bytes_per_minute:
            retry = max(1, math.ceil(spent[0][0] + WINDOW_S - now))
            raise TooManyRequests(
                f"Download limit: {self.bytes_per_minute} bytes per minute per token. Retry after {retry}s.",
                {"Retry-After": str(retry)},
            )
        spent.append((now, size))
        self.active += 1
        return Lease(self)


class Lease:
    """One admitted download's stream, given back exactly once."""

    def __init__(self, downloads: Downloads) -> None:
        self.downloads: Downloads | None = downloads

    def release(self) -> None:
        if self.downloads is not None:
            self.downloads.active -= 1
            self.downloads = None


def open_range(path: Path | None, offset: int, limit: int) -> tuple[BinaryIO | None, int]:
    """The open file positioned at ``offset`` and how many bytes to send (at most ``limit``); no file
    (not written yet, or just moved to the blob store): (None, 0)."""
    if path is None:
        return None, 0
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None, 0
    size = os.fstat(handle.fileno()).st_size
    handle.seek(offset)
    return handle, max(0, min(size - offset, limit))


def stream_range(handle: BinaryIO | None, length: int, lease: Lease) -> AsyncIterator[bytes]:
    """``length`` bytes of ``handle`` a chunk at a time, each read off the event loop. The stream is
    given back however the download ends: done, the client gone, or never started at all (collected)."""
    chunks = _chunks(handle, length, lease)
    weakref.finalize(chunks, lease.release)
    return chunks


async def _chunks(handle: BinaryIO | None, length: int, lease: Lease) -> AsyncIterator[bytes]:
    try:
        while handle is not None and length > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        lease.release()
        if handle is not None:
            handle.close()
