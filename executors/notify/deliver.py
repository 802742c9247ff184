"""One notification to one target, tried again with exponential backoff (stamina) within NOTIFY_ATTEMPTS
and NOTIFY_TIMEOUT_S: a webhook gets gpuledger's JSON payload by POST, any other target goes through apprise.

Redirects are not followed: a redirect could lead past NOTIFY_ALLOWED to a host the admin did not name.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import stamina

from executors.errors import NotifyError, NotifyRefused
from executors.notify.targets import apprise_service, is_webhook
from ledger.domain.clock import iso
from ledger.domain.jobs import JobState
from ledger.store.settings import NotifySettings

if TYPE_CHECKING:
    import httpx

RETRIED_4XX = (408, 425, 429)  # a 4xx that says "later", not "never"


def payload(job: JobState, target: int, link_base: str) -> dict[str, Any]:
    """The webhook body (docs/user-guide.md, "Told when a job ends"); ``delivery_id`` lets a receiver
    drop the rare repeat (a server killed between a target's answer and its recording sends again)."""
    return {
        "event": "job.ended",
        "delivery_id": f"{job.job_id}.{target}",
        "job_id": job.job_id,
        "user_id": job.user_id,
        "status": job.status,
        "exit_code": job.exit_code,
        "reason": job.reason,
        "message": job.message,
        "submitted_at": iso(job.created_at),
        "started_at": iso(job.first_started_at),
        "finished_at": iso(job.completed_at),
        "link": f"{link_base.rstrip('/')}/api/status/{job.job_id}",
    }


def idle_payload(job: JobState, attempt: int, action: str, target: int, link_base: str) -> dict[str, Any]:
    """The webhook body of an idle-GPU verdict (docs/admin-guide.md, "Idle-GPU notifications")."""
    return {
        "event": "job.gpu_idle",
        "delivery_id": f"{job.job_id}.gpu_idle.{attempt}.{target}",
        "job_id": job.job_id,
        "user_id": job.user_id,
        "attempt": attempt,
        "action": action,
        "status": job.status,
        "message": job.message,
        "link": f"{link_base.rstrip('/')}/api/jobs/{job.job_id}/gpu",
    }


def summary(body: dict[str, Any]) -> tuple[str, str]:
    """Title and text for an apprise service (e-mail, chat): the same facts as the webhook's body."""
    if body["event"] == "job.gpu_idle":
        title = f"gpuledger job {body['job_id']}: GPU idle ({body['action']})"
        return title, f"Job {body['job_id']} of {body['user_id']}: {body['message']}.\n{body['link']}"
    title = f"gpuledger job {body['job_id']} {body['status']}"
    code = "" if body["exit_code"] is None else f", exit code {body['exit_code']}"
    text = f"Job {body['job_id']} of {body['user_id']}: {body['status']} ({body['reason']}{code}).\n{body['link']}"
    return title, text


async def _post(client: httpx.AsyncClient, target: str, body: dict[str, Any]) -> None:
    import httpx

    try:
        answer = await client.post(target, json=body)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise NotifyError(f"{type(e).__name__}: could not reach the target") from e
    if answer.is_success:
        return
    status = answer.status_code
    if 400 <= status < 500 and status not in RETRIED_4XX:
        raise NotifyRefused(f"the target answered {status}")
    raise NotifyError(f"the target answered {status}")


async def _apprise(target: str, body: dict[str, Any]) -> None:
    title, text = summary(body)

    def send() -> bool:
        service = apprise_service(target)
        try:
            return service is not None and bool(service.notify(title=title, body=text))
        except Exception as e:  # a plug-in's own failure is one failed try, never a lost sender task
            raise NotifyError(f"apprise: {type(e).__name__}") from e

    if not await asyncio.to_thread(send):  # apprise blocks (requests, smtplib): off the event loop
        raise NotifyError("apprise could not send it (the service refused or was not reachable)")


async def deliver(target: str, body: dict[str, Any], settings: NotifySettings) -> int:
    """Sends until it is taken; returns the tries it took. Raises ``NotifyError`` (its ``tries`` set)
    when the tries or the time ran out, or the target refused for good."""
    import httpx  # here, not at the top: `serve` starts without httpx (tests/test_cli_commands.py)

    tries = 0
    async with httpx.AsyncClient(timeout=settings.request_timeout_s, follow_redirects=False) as client:
        retrying = stamina.retry_context(
            on=lambda e: isinstance(e, NotifyError) and not isinstance(e, NotifyRefused),
            attempts=settings.attempts,
            timeout=settings.timeout_s,
            wait_initial=settings.backoff_s,
            wait_max=settings.backoff_s * 32,
            wait_jitter=settings.backoff_s / 2,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries = attempt.num
                    await (_post(client, target, body) if is_webhook(target) else _apprise(target, body))
        except NotifyError as e:
            e.tries = tries
            raise
    return tries
