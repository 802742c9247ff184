"""The LLM review stage: jobs waiting in phase ``scanning`` get a verdict, then are queued or rejected.

It resumes after a restart: whatever the ledger shows as scanning is reviewed again.
"""

from __future__ import annotations

import asyncio
import functools

import structlog

from executors.scan.llm import llm_review_enabled, review_with_llm
from executors.scan.scanner import scan_static
from executors.services import Services
from ledger.domain.errors import DomainError
from ledger.domain.events import JobScanned
from ledger.store import commands

log = structlog.get_logger()


def start_reviews(services: Services) -> asyncio.Task[None] | None:
    """The review loop's task, or None when no LLM review is configured."""
    if not llm_review_enabled(services.settings.scanner):
        return None
    return asyncio.create_task(_review_loop(services), name="llm-review")


async def _review_loop(services: Services) -> None:
    in_review: set[str] = set()
    while True:
        seen = services.ledger.head
        for job in list(services.ledger.views.active_jobs()):
            if job.phase == "scanning" and job.job_id not in in_review:
                in_review.add(job.job_id)
                task = asyncio.create_task(_review(services, job.job_id))
                task.add_done_callback(functools.partial(_forget, in_review, job.job_id))
        await services.ledger.wait_beyond(seen, timeout=30)


def _forget(in_review: set[str], job_id: str, _task: asyncio.Task[None]) -> None:
    in_review.discard(job_id)


async def _review(services: Services, job_id: str) -> None:
    job = services.ledger.views.jobs[job_id]
    code = (services.blobs.get(job.code) or b"").decode("utf-8", errors="replace")
    static = scan_static(code)
    report = await review_with_llm(code, services.settings.scanner, static)
    added = [f for f in report.findings if f not in static.findings]  # static ones are already recorded
    verdict = JobScanned(job_id=job_id, verdict=report.verdict, findings=added, scanner="llm", model=report.model)
    try:
        await services.ledger.write(commands.record_review(job_id, verdict))
    except DomainError as e:  # cancelled meanwhile, for instance
        log.info("job.review_refused", job_id=job_id, error=str(e))
    log.info("job.reviewed", job_id=job_id, user_id=job.user_id, verdict=report.verdict)
