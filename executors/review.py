"""The LLM review stage: jobs waiting in phase ``scanning`` get a verdict, then are queued or rejected.

It resumes after a restart: whatever the ledger shows as scanning is reviewed again.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

import structlog

from ledger import commands
from ledger.errors import DomainError
from ledger.events import JobScanned

if TYPE_CHECKING:
    from executors.runtime import Runtime

log = structlog.get_logger()


def start_reviews(runtime: Runtime) -> None:
    from executors.llm_review import llm_review_enabled

    if llm_review_enabled(runtime.settings):
        runtime.background.append(asyncio.create_task(_review_loop(runtime), name="llm-review"))


async def _review_loop(runtime: Runtime) -> None:
    in_review: set[str] = set()
    while True:
        seen = runtime.ledger.head
        for job in list(runtime.ledger.views.active_jobs()):
            if job.phase == "scanning" and job.job_id not in in_review:
                in_review.add(job.job_id)
                task = asyncio.create_task(_review(runtime, job.job_id))
                task.add_done_callback(functools.partial(_forget, in_review, job.job_id))
        await runtime.ledger.wait_beyond(seen, timeout=30)


def _forget(in_review: set[str], job_id: str, _task: asyncio.Task[None]) -> None:
    in_review.discard(job_id)


async def _review(runtime: Runtime, job_id: str) -> None:
    from executors.llm_review import review_with_llm
    from executors.scanner import scan_static

    job = runtime.ledger.views.jobs[job_id]
    code = (runtime.blobs.get(job.code) or b"").decode("utf-8", errors="replace")
    static = scan_static(code)
    report = await review_with_llm(code, runtime.settings, static)
    added = [f for f in report.findings if f not in static.findings]  # static ones are already recorded
    verdict = JobScanned(job_id=job_id, verdict=report.verdict, findings=added, scanner="llm", model=report.model)
    try:
        await runtime.ledger.write(commands.record_review(job_id, verdict))
    except DomainError as e:  # cancelled meanwhile, for instance
        log.info("job.review_refused", job_id=job_id, error=str(e))
    log.info("job.reviewed", job_id=job_id, user_id=job.user_id, verdict=report.verdict)
