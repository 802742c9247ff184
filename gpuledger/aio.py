"""The asynchronous client: ``AsyncClient(url, token)``, its calls, and ``AsyncJob`` handles.

The SDK's one implementation: ``gpuledger/client.py`` (``Client``, ``Job``) is generated from this file by
``scripts/unasync_sdk.py`` (unasync), so a call cannot exist on one client and not the other. Edit this file.

Waiting never polls: ``wait`` reads the ledger's event stream, ``logs(follow=True)`` the log stream, and
both reconnect with ``Last-Event-ID`` after a dropped connection or a server restart.
"""

from __future__ import annotations

import json
import time
from asyncio import sleep
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from gpuledger import wire
from gpuledger.config import load_config
from gpuledger.errors import ConnectionFailed, JobFailed, RateLimited
from gpuledger.models import (
    ArrayStatus,
    ArraySubmitted,
    ArtifactList,
    BulkCancel,
    GpuUsage,
    JobGpu,
    JobResults,
    JobStatus,
    LedgerEvent,
    LogChunk,
    NodeInfo,
    QuotaStatus,
    Submitted,
    WhoAmI,
)
from gpuledger.project import PackedProject


class AsyncClient:
    """One server, one token. ``rate_limit_wait``: how long a plain call may sleep on a 429 before raising."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        rate_limit_wait: float = 0.0,
        reconnect_for: float = wire.RECONNECT_FOR_S,
        transport: httpx.AsyncBaseTransport | None = None,
        on_token_expiry: Callable[[str], None] | None = None,
    ) -> None:
        config = load_config(url, token)
        self.url, self.token = config.url, config.token
        self.rate_limit_wait, self.reconnect_for = rate_limit_wait, reconnect_for
        self.on_token_expiry = on_token_expiry  # called with the expiry every answer carries
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._http = httpx.AsyncClient(base_url=config.url, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _vet(self, response: httpx.Response) -> None:
        """Report the token's expiry; an answer no gpuledger server gives is checked against ``GET /``."""
        if (expiry := wire.token_expiry(response)) and self.on_token_expiry is not None:
            self.on_token_expiry(expiry)
        if wire.looks_foreign(response):
            try:
                root: httpx.Response | None = await self._http.get("/")
            except httpx.HTTPError:
                root = None
            if (error := wire.foreign_error(self.url, root, response)) is not None:
                raise error

    async def whoami(self) -> WhoAmI:
        """Who the token says you are, and when it expires."""
        who: WhoAmI = wire.decode(WhoAmI, await self.request("GET", "/api/whoami"))
        return who

    async def request(self, method: str, path: str, *, waiting: bool = False, **kwargs: Any) -> httpx.Response:
        """One call; a 429 is slept off when it fits ``rate_limit_wait`` (always, for waiting calls)."""
        budget = float("inf") if waiting else self.rate_limit_wait
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                raise ConnectionFailed(f"cannot reach {self.url}: {e}") from e
            await self._vet(response)
            if response.status_code != 429:
                return wire.check(response)
            delay = wire.retry_after(response) or 1.0
            if delay > budget:
                raise wire.error_for(response)
            budget -= delay
            await sleep(delay)

    async def submit(
        self,
        code: wire.Source | PackedProject,
        config: wire.Source,
        *,
        idempotency_key: str | None = None,
        after_ok: list[str] | None = None,
        after_any: list[str] | None = None,
        after_not_ok: list[str] | None = None,
    ) -> AsyncJob:
        """Queue a job and return at once (``wait=false`` underneath); ``code``/``config`` are text or a Path.

        ``code`` may be a project directory (or one packed with ``gpuledger.project.pack_project``): the config
        then names its ``entrypoint``. ``after_ok`` / ``after_any`` / ``after_not_ok``: job or array ids it
        waits for (the config's ``after:``)."""
        config = wire.with_after(config, wire.after_of(after_ok, after_any, after_not_ok))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = await self.request(
            "POST", "/api/submit", params={"wait": "false"}, files=wire.submit_files(code, config), headers=headers
        )
        submitted = wire.decode(Submitted, answer)
        return AsyncJob(self, submitted.job_id, submitted=submitted)

    async def submit_array(
        self,
        code: wire.Source | PackedProject,
        config: wire.Source,
        *,
        array: str | None = None,
        idempotency_key: str | None = None,
        after_ok: list[str] | None = None,
        after_any: list[str] | None = None,
        after_not_ok: list[str] | None = None,
    ) -> ArraySubmitted:
        """Queue a job array (``array="0-99%8"``) or the config's ``sweep:``, as one submission (waiting,
        with ``after_*``, as ``submit`` does).

        ``code`` is a file, a project directory or a ``PackedProject``, as for ``submit``: every task runs it."""
        config = wire.with_after(config, wire.after_of(after_ok, after_any, after_not_ok))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"array": array} if array is not None else {}
        answer = await self.request(
            "POST", "/api/arrays", params=params, files=wire.submit_files(code, config), headers=headers
        )
        submitted: ArraySubmitted = wire.decode(ArraySubmitted, answer)
        return submitted

    async def array_status(self, array_id: str) -> ArrayStatus:
        """The array's tasks: counts per status, and each task."""
        status: ArrayStatus = wire.decode(ArrayStatus, await self.request("GET", f"/api/arrays/{array_id}"))
        return status

    async def cancel_array(self, array_id: str, *, tasks: str | None = None) -> BulkCancel:
        """Cancel the array's tasks (``tasks="5-9"``: only those indices), in one write."""
        params = {"tasks": tasks} if tasks is not None else {}
        answer = await self.request("POST", f"/api/arrays/{array_id}/cancel", params=params)
        cancelled: BulkCancel = wire.decode(BulkCancel, answer)
        return cancelled

    async def cancel_all(self) -> BulkCancel:
        """Cancel every job of yours not yet ended, in one write."""
        cancelled: BulkCancel = wire.decode(BulkCancel, await self.request("POST", "/api/cancel-all"))
        return cancelled

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def status(self, job_id: str, *, waiting: bool = False) -> JobStatus:
        status: JobStatus = wire.decode(JobStatus, await self.request("GET", f"/api/status/{job_id}", waiting=waiting))
        return status

    async def job_gpu(self, job_id: str, *, limit: int = 500) -> JobGpu:
        """The job's GPU samples (the newest ``limit``) and its summary."""
        answer = await self.request("GET", f"/api/jobs/{job_id}/gpu", params={"limit": limit})
        gpu: JobGpu = wire.decode(JobGpu, answer)
        return gpu

    async def results(self, job_id: str, *, waiting: bool = False) -> JobResults:
        answer = await self.request("GET", f"/api/results/{job_id}", waiting=waiting)
        results: JobResults = wire.decode(JobResults, answer)
        return results

    async def cancel(self, job_id: str) -> str:
        """The job's state after the request: ``cancelled`` or, for a running job, ``cancelling``."""
        answer = await self.request("POST", f"/api/cancel/{job_id}")
        return str(answer.json()["status"])

    async def jobs(self, *, user_id: str | None = None, status: str | None = None, limit: int = 50) -> list[JobStatus]:
        params = {k: v for k, v in {"user_id": user_id, "status": status, "limit": limit}.items() if v is not None}
        answer = await self.request("GET", "/api/jobs", params=params)
        jobs: list[JobStatus] = wire.decode_field(list[JobStatus], answer, "jobs")
        return jobs

    async def gpu_usage(self, *, user_id: str | None = None, since: str = "7d", limit: int = 50) -> GpuUsage:
        """GPU-hours held vs used since ``since`` (a duration back, or an ISO time): yours, or (admins) anyone's."""
        params = {k: v for k, v in {"user_id": user_id, "since": since, "limit": limit}.items() if v is not None}
        usage: GpuUsage = wire.decode(GpuUsage, await self.request("GET", "/api/usage/gpu", params=params))
        return usage

    async def artifacts(self, job_id: str) -> ArtifactList:
        """The files the job left under ``outputs/`` (and its ``artifacts:`` globs), kept after it ended."""
        listing: ArtifactList = wire.decode(ArtifactList, await self.request("GET", f"/api/jobs/{job_id}/artifacts"))
        return listing

    async def download(self, job_id: str, paths: list[str] | None = None, *, to: Path = Path()) -> list[Path]:
        """Fetch the job's artifacts (all, or those at ``paths``) below ``to``, each checked against its digest."""
        saved = []
        for artifact in wire.chosen_artifacts(await self.artifacts(job_id), paths):
            answer = await self.request("GET", f"/api/jobs/{job_id}/artifacts/{quote(artifact.path)}")
            saved.append(wire.save_artifact(artifact, answer.content, to))
        return saved

    async def quota(self, user_id: str | None = None) -> QuotaStatus:
        """Your daily quotas (admins: ``user_id``'s): used, left and when they reset."""
        params = {"user_id": user_id} if user_id else {}
        quota: QuotaStatus = wire.decode(QuotaStatus, await self.request("GET", "/api/quota", params=params))
        return quota

    async def nodes(self) -> list[NodeInfo]:
        nodes: list[NodeInfo] = wire.decode_field(list[NodeInfo], await self.request("GET", "/api/nodes"), "nodes")
        return nodes

    async def notify_targets(self) -> list[str]:
        """Your default notify targets: told when a job of yours whose config names none ends."""
        targets: list[str] = wire.decode_field(list[str], await self.request("GET", "/api/me/notify"), "targets")
        return targets

    async def set_notify(self, targets: list[str]) -> list[str]:
        """Set your default notify targets (``[]`` clears them); a target the server refuses is a 400 naming it."""
        answer = await self.request("PUT", "/api/me/notify", json={"targets": targets})
        stored: list[str] = wire.decode_field(list[str], answer, "targets")
        return stored

    async def job_events(self, job_id: str) -> list[LedgerEvent]:
        answer = await self.request("GET", f"/api/jobs/{job_id}/events", waiting=True)
        events: list[LedgerEvent] = wire.decode_field(list[LedgerEvent], answer, "events")
        return events

    async def logs(
        self, job_id: str, *, stream: str = "stdout", offset: int = 0, follow: bool = False
    ) -> AsyncIterator[LogChunk]:
        """The stream's text from byte ``offset``; with ``follow``, until the job ends, across reconnects."""
        if not follow:
            async for chunk in self._logs_now(job_id, stream, offset):
                yield chunk
            return
        path, params = f"/api/jobs/{job_id}/logs", {"stream": stream, "offset": offset, "follow": "true"}
        async for sse in self._follow(path, params, None):
            if sse.event == "log":
                yield wire.log_chunk(stream, sse.data)
            elif sse.event == "end" and (pruned := json.loads(sse.data).get("pruned")):
                yield LogChunk(stream=stream, offset=0, text="", pruned=pruned)

    async def _logs_now(self, job_id: str, stream: str, offset: int) -> AsyncIterator[LogChunk]:
        while True:
            params = {"stream": stream, "offset": offset}
            answer = await self.request("GET", f"/api/jobs/{job_id}/logs", params=params)
            if not answer.content:
                if pruned := answer.headers.get("x-job-pruned"):  # retention removed this output
                    yield LogChunk(stream=stream, offset=offset, text="", pruned=pruned)
                return
            offset = int(answer.headers.get("x-log-offset", offset + len(answer.content)))
            yield LogChunk(stream=stream, offset=offset, text=answer.content.decode("utf-8", errors="replace"))

    async def events(self, *, after: int = 0, timeout: float | None = None) -> AsyncGenerator[LedgerEvent]:
        """Ledger events after position ``after`` (yours, or all for an admin), live, until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async for sse in self._follow("/api/events/stream", {"after": after}, after, deadline):
            yield wire.ledger_event(sse.event, sse.data)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobStatus:
        """Block until the job ends (or ``timeout`` passes): woken by its ``job.finished`` event."""
        history = await self.job_events(job_id)
        status = await self.status(job_id, waiting=True)
        if status.is_terminal:
            return status
        after = history[-1].position if history else 0
        async with aclosing(self.events(after=after, timeout=timeout)) as events:  # closes the stream at once
            async for event in events:
                if event.job_id == job_id and event.type == "job.finished":
                    break
        return await self.status(job_id, waiting=True)

    async def _follow(
        self, path: str, params: dict[str, Any], last_id: int | None, deadline: float | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        reconnect = wire.Reconnect(self.reconnect_for)
        while deadline is None or time.monotonic() < deadline:
            headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                async with aconnect_sse(
                    self._http, "GET", path, params=params, headers=headers, timeout=wire.sse_timeout(remaining)
                ) as source:
                    if (expiry := wire.token_expiry(source.response)) and self.on_token_expiry is not None:
                        self.on_token_expiry(expiry)
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        await _sleep_off(source.response)
                        continue
                    async for sse in source.aiter_sse():
                        reconnect.delivered()
                        if sse.id:
                            last_id = int(sse.id)
                        yield sse
                        if sse.event == "end":
                            return
                # Closed without an end (the server stopping): reopen where it was, after a pause.
                await sleep(reconnect.failed(ConnectionFailed("stream closed"), time.monotonic()))
            except httpx.ReadTimeout:
                continue  # an idle stream: reopen it where it was
            except httpx.TransportError as e:
                await sleep(reconnect.failed(e, time.monotonic()))


async def _sleep_off(response: httpx.Response) -> None:
    """A 429 on a stream is waited out; any other error is raised."""
    error = wire.error_for(response)
    if not isinstance(error, RateLimited):
        raise error
    await sleep(error.retry_after or 1.0)


@dataclass
class AsyncJob:
    """A handle on one job; every call asks the server (nothing is cached but the submit answer)."""

    client: AsyncClient
    job_id: str
    submitted: Submitted | None = field(default=None, repr=False)

    async def status(self) -> JobStatus:
        return await self.client.status(self.job_id)

    async def wait(self, *, timeout: float | None = None, check: bool = False) -> JobStatus:
        """The final status; ``check=True`` raises ``JobFailed`` unless the job completed."""
        status = await self.client.wait(self.job_id, timeout=timeout)
        if check and status.is_terminal and status.status != "completed":
            raise JobFailed(status)
        return status

    def logs(self, *, stream: str = "stdout", follow: bool = False, offset: int = 0) -> AsyncIterator[LogChunk]:
        return self.client.logs(self.job_id, stream=stream, follow=follow, offset=offset)

    async def results(self) -> JobResults:
        return await self.client.results(self.job_id)

    async def cancel(self) -> str:
        return await self.client.cancel(self.job_id)
