"""Live views: a job's console output (plain or as Server-Sent Events) and the ledger's event stream.

SSE ids are resume points: the byte offset for logs, the ledger position for events; a client that
reconnects with ``Last-Event-ID`` continues without loss or duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream

from api.auth import Identity
from api.context import authenticated
from api.downloads import open_range, stream_range
from api.openapi import BEARER, EventStreamOperation, LogsOperation, problems
from api.ports import EventLog, JobOutput, Port, read_views
from api.sse import WAKE_S, session
from ledger.domain.clock import iso
from ledger.domain.events import TokenIssued, TokenRevoked, event_tag
from ledger.domain.jobs import JobState
from ledger.domain.tokens import may_see
from ledger.store.retention import pruned_message
from ledger.store.settings import Settings

CHUNK = 64 * 1024
TICK_S = 0.2  # live files grow without ledger events: how often a follower looks at them


def pruned_fields(job: JobState) -> dict[str, str]:
    """The pruned marker a read of a pruned job's output carries (empty for any other job)."""
    message = pruned_message(job)
    return {} if message is None else {"pruned_at": iso(job.pruned_at) or "", "pruned": message}


def pruned_headers(job: JobState) -> dict[str, str]:
    fields = pruned_fields(job)
    return {"X-Job-Pruned-At": fields["pruned_at"], "X-Job-Pruned": fields["pruned"]} if fields else {}


def complete_utf8(data: bytes, final: bool) -> bytes:
    """Hold back a multi-byte character cut at the end of a chunk (it comes with the next one)."""
    if final:
        return data
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last character
            need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return data if need <= back else data[:-back]
    return data


MAX_OFFSET = 2**40  # 1 TiB: beyond any output limit, below every file system's largest seek
# A followed log's SSE id is (attempt - 1) * ATTEMPT_SPAN + the byte offset in that attempt's output: the
# plain offset for a first attempt, as before retries, and a resume point that names its attempt after.
ATTEMPT_SPAN = 2 * MAX_OFFSET
MAX_LOG_ID = 2**59  # 18 digits, as LastEventId allows
MAX_POSITION = 2**62  # ledger positions are SQLite integers; a power of two is exact in the JSON document
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        pattern=r"^[0-9]{1,18}$",
        description="Resume after this SSE id (sent by reconnecting EventSource clients)",
    ),
]


def _log_id(attempt: int, offset: int) -> str:
    return str((attempt - 1) * ATTEMPT_SPAN + offset)


def _resume_point(last_event_id: str | None, default: int, most: int) -> int:
    """Where a reconnecting client resumes; past the end there is simply nothing yet."""
    if last_event_id is None:
        return default
    return min(int(last_event_id), most)


def _session(
    source: AsyncGenerator[ServerSentEventMessage | None, None],
    events: EventLog,
    settings: Settings,
    identity: Identity,
    name: str,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    return session(
        source,
        views=lambda: read_views(events),
        identity=identity,
        heartbeat_s=settings.http.sse_heartbeat_s,
        name=name,
    )


class StreamController(Controller):
    path = "/api"
    tags = ["streams"]

    @get(
        "/jobs/{job_id:str}/logs",
        guards=[authenticated],
        summary="A job's stdout/stderr from a byte offset; ?follow=true for SSE",
        operation_id="jobLogs",
        operation_class=LogsOperation,
        security=BEARER,
        responses=problems(400, 401, 404, 429),
    )
    async def logs(
        self,
        settings: NamedDependency[Settings],
        output: Port[JobOutput],
        events: Port[EventLog],
        job_id: FromPath[str],
        job: NamedDependency[JobState],
        identity: NamedDependency[Identity],
        state: State,
        stream: Literal["stdout", "stderr"] = Parameter(default="stdout", description="Which console stream"),
        offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET, description="Start at this byte"),
        follow: bool = Parameter(default=False, description="Stream as Server-Sent Events until the job ends"),
        last_event_id: LastEventId = None,
    ) -> Stream | ServerSentEvent:
        if not follow:
            handle, length = await asyncio.to_thread(
                open_range, output.latest(job, stream), offset, settings.runner.max_output_bytes
            )
            try:
                lease = state.downloads.admit(identity.token_id, length)
            except BaseException:
                if handle is not None:
                    handle.close()
                raise
            return Stream(
                stream_range(handle, length, lease),
                media_type="application/octet-stream",
                headers={"X-Log-Offset": str(offset + length), "X-Job-Status": job.status} | pruned_headers(job),
            )
        if last_event_id is not None:
            attempt, start = divmod(_resume_point(last_event_id, 0, MAX_LOG_ID), ATTEMPT_SPAN)
            attempt += 1
        else:  # from ``offset`` in the latest attempt's output
            attempt, start = max(job.attempt, 1), offset
        job_id = job.job_id  # the full id of a prefix
        source = self._follow_log(events, output, job_id, stream, attempt, start)
        return ServerSentEvent(_session(source, events, settings, identity, f"logs {job_id} {stream}"))

    async def _follow_log(
        self, events: EventLog, output: JobOutput, job_id: str, stream: str, attempt: int, offset: int
    ) -> AsyncGenerator[ServerSentEventMessage | None, None]:
        """One attempt's output after another: a retried job's next attempt starts at its own byte 0."""
        while True:
            seen = events.head
            job = read_views(events).jobs[job_id]
            data, complete = output.read(job, attempt, stream, offset, CHUNK)
            data = complete_utf8(data, final=complete)
            if data:
                offset += len(data)
                text = data.decode("utf-8", errors="replace")
                body = {"offset": offset, "text": text} | ({"attempt": attempt} if attempt > 1 else {})
                yield ServerSentEventMessage(
                    event="log", id=_log_id(attempt, offset), data=msgspec.json.encode(body).decode()
                )
                continue
            if attempt < job.attempt:  # this attempt's output is all sent and the next one is dispatched
                attempt, offset = attempt + 1, 0
                continue
            if job.is_terminal:
                yield ServerSentEventMessage(
                    event="end",
                    id=_log_id(attempt, offset),
                    data=msgspec.json.encode(
                        {"status": job.status, "exit_code": job.exit_code} | pruned_fields(job)
                    ).decode(),
                )
                return
            await events.wait_beyond(seen, timeout=TICK_S)
            yield None

    @get(
        "/events/stream",
        guards=[authenticated],
        summary="Ledger events as SSE (admins: all; users: their own jobs and tokens)",
        operation_class=EventStreamOperation,
        security=BEARER,
        responses=problems(400, 401),
    )
    async def events(
        self,
        settings: NamedDependency[Settings],
        events: Port[EventLog],
        identity: NamedDependency[Identity],
        after: int | None = Parameter(
            default=None,
            ge=0,
            le=MAX_POSITION,
            description="Start after this ledger position (0: the whole log); left out, only events from now on",
        ),
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        # Without ``after`` a stream starts at the head: replaying the whole log to every client that
        # only wants what happens next cost each new stream a walk from position 0.
        position = _resume_point(last_event_id, events.head if after is None else after, MAX_POSITION)

        def visible(record: Any) -> bool:
            if identity.is_admin:
                return True
            event = record.event
            if isinstance(event, TokenIssued | TokenRevoked):
                return may_see(identity, event.user_id)
            job = read_views(events).jobs.get(record.stream.removeprefix("job-"))
            return job is not None and may_see(identity, job.user_id)

        async def stream() -> AsyncGenerator[ServerSentEventMessage | None, None]:
            nonlocal position
            while True:
                seen = events.head
                for record in events.events_after(position, limit=500):
                    position = record.position
                    if visible(record):
                        yield ServerSentEventMessage(
                            event=event_tag(record.event),
                            id=str(record.position),
                            data=msgspec.json.encode(
                                {
                                    "position": record.position,
                                    "stream": record.stream,
                                    "recorded_at": iso(record.recorded_at),
                                    "actor": record.actor,
                                    "event": record.event,
                                }
                            ).decode(),
                        )
                if position >= seen:
                    await events.wait_beyond(seen, timeout=WAKE_S)
                    yield None

        return ServerSentEvent(_session(stream(), events, settings, identity, "events"))
