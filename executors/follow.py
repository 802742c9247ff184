"""Following a running job: output streamed into local live files, completion noticed at once.

The wrapper's ``follow`` sends framed output from byte offsets and ends with the exit status. The
offsets are the sizes of our local copies, so a dropped connection resumes without loss or duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from executors import protocol as wp
from executors.errors import RemoteCommandFailed, StreamBroken
from executors.retry import until_lost
from executors.transport import Transport

log = structlog.get_logger()


class LiveFiles:
    """The local copies of a job's stdout and stderr, appended as frames arrive.

    ``cap`` (0: none) bounds each copy: bytes past it are dropped, so a job printing without end costs
    this disk at most ``cap`` per stream while the wrapper stops it (``output_limit``).
    """

    def __init__(self, root: Path, cap: int = 0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.paths = {wp.FrameKind.STDOUT: root / "stdout", wp.FrameKind.STDERR: root / "stderr"}
        self.cap = cap
        for path in self.paths.values():
            path.touch(exist_ok=True)

    def offsets(self) -> tuple[int, int]:
        return self.paths[wp.FrameKind.STDOUT].stat().st_size, self.paths[wp.FrameKind.STDERR].stat().st_size

    def append(self, kind: wp.FrameKind, data: bytes) -> None:
        """Blocking (a file write): callers on the event loop use ``append_off_loop``."""
        with self.paths[kind].open("ab") as handle:
            if self.cap:
                data = data[: max(0, self.cap - handle.tell())]
            if data:
                handle.write(data)

    async def append_off_loop(self, kind: wp.FrameKind, data: bytes) -> None:
        """One frame at a time in a worker thread: the stream is not read while it writes, so no more
        than one frame (1 MiB) is ever buffered here, and the event loop never waits on the disk."""
        await asyncio.to_thread(self.append, kind, data)


async def follow_job(
    transport: Transport,
    live: LiveFiles,
    workdir: str,
    on_started: Callable[[wp.Started], Awaitable[None]],
    *,
    lost_after_s: float,
) -> wp.ExitStatus:
    """Launch if needed, then stream until the wrapper reports the end; reconnect while unreachable."""

    async def follow_once() -> wp.ExitStatus:
        try:
            status = await _follow_once(transport, workdir, live, on_started)
        except (RemoteCommandFailed, wp.ProtocolError) as e:
            raise StreamBroken(str(e)) from e
        if status is None:
            raise StreamBroken("follow ended without a status")
        return status

    return await until_lost(follow_once, node=transport.node, lost_after_s=lost_after_s)


async def _follow_once(
    transport: Transport, workdir: str, live: LiveFiles, on_started: Callable[[wp.Started], Awaitable[None]]
) -> wp.ExitStatus | None:
    out_offset, err_offset = live.offsets()
    decoder = wp.FrameDecoder()
    # `run` launches (idempotently: never a second start) and follows, in one round trip.
    command = wp.run_command(transport.python, workdir, out_offset, err_offset)
    async for chunk in transport.stream(command):
        for frame in decoder.feed(chunk):
            if frame.kind == wp.FrameKind.STARTED:
                await on_started(wp.decode_started(frame.payload))
            elif frame.kind in (wp.FrameKind.STDOUT, wp.FrameKind.STDERR):
                await live.append_off_loop(frame.kind, frame.payload)
            elif frame.kind == wp.FrameKind.STATUS:
                return wp.decode_exit_status(frame.payload)
            elif frame.kind == wp.FrameKind.LOST:
                lost = wp.decode_lost(frame.payload)
                return wp.ExitStatus(
                    exit_code=None,
                    signal=None,
                    ended_at=datetime.now(UTC),
                    error=f"the job's wrapper is gone without an exit status: {lost.reason}",
                )
    return None
