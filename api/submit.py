"""The submit pipeline: sizes, config, identity, the user_id rule, the static scan, then one atomic write.

Limits are checked inside the write (see ``ledger.store.commands.submit_job``), so concurrent submissions
cannot exceed them. ``wait=true`` then waits on commit notifications, never by polling the database.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import msgspec
from ulid import ULID

from api import project_intake
from api.auth import Identity, identify
from api.errors import BadRequest, NotAuthenticated, PayloadTooLarge, PermissionDenied
from api.jobconfig import JobConfig, parse_config
from api.ports import Intake, LedgerWriter, read_views
from executors.notify.targets import check_all
from executors.scan.llm import llm_review_enabled
from executors.scan.scanner import format_findings, scan_static
from ledger.domain.clock import now_us
from ledger.domain.errors import DomainError
from ledger.domain.events import Blob, JobScanned, JobSubmitted, NotifyRequested, RetryPolicy
from ledger.domain.jobs import JobState
from ledger.domain.quotas import QuotaLimits
from ledger.domain.retries import policy_for
from ledger.store import commands
from ledger.store.settings import Settings
from ledger.store.store import Committed


@dataclass(frozen=True)
class SubmitRequest:
    code: bytes | None
    config: bytes | None
    identity: Identity | None  # from the Authorization header, checked before the body was read
    idempotency_key: str | None
    client_address: str
    project: bytes | None = None  # a packed project directory (then ``code`` is not sent)


@dataclass(frozen=True)
class Accepted:
    job: JobState
    warnings: list[str]
    replayed: bool


def _check_sizes(request: SubmitRequest, settings: Settings) -> tuple[bytes, bytes]:
    """The code (empty for a project, whose size is checked as it is read) and the config."""
    if request.project is not None and request.code is not None:
        raise BadRequest("Send either a code file or a project, not both")
    if request.code is None and request.project is None:
        raise BadRequest("Missing required file: code")
    if request.config is None:
        raise BadRequest("Missing required file: config_file")
    code = request.code if request.code is not None else b""
    if len(code) > settings.queue.max_code_bytes:
        raise PayloadTooLarge(f"Code file too large: {len(code)} bytes (maximum {settings.queue.max_code_bytes})")
    if len(request.config) > settings.queue.max_config_bytes:
        raise PayloadTooLarge(
            f"Config file too large: {len(request.config)} bytes (maximum {settings.queue.max_config_bytes})"
        )
    return code, request.config


def _identity(request: SubmitRequest, config: JobConfig, intake: Intake) -> Identity:
    """Header first; old clients send the token in the config. Both given: same user or 403."""
    header_identity = request.identity
    config_identity = identify(read_views(intake.ledger), config.token) if config.token else None
    if header_identity and config_identity and header_identity.user_id != config_identity.user_id:
        raise PermissionDenied("The config's token and the Authorization header belong to different users")
    identity = header_identity or config_identity
    if identity is None:
        raise NotAuthenticated("Not authenticated: send 'Authorization: Bearer <token>' or a token in the config")
    if config.user_id is not None and config.user_id != identity.user_id:
        # The old text first: older clients match on it.
        raise PermissionDenied(
            f"Token does not belong to specified user_id: the token is {identity.user_id}'s, "
            f"the config says {config.user_id} (leave user_id out to submit as {identity.user_id})"
        )
    intake.tokens.touch(identity.token_id)
    return identity


def _static_scan(code_text: str, job_id: str, settings: Settings) -> JobScanned | None:
    if not settings.scanner.enabled:
        return None
    report = scan_static(code_text)
    if report.verdict == "rejected":
        critical = [f for f in report.findings if f.severity == "critical"]
        raise BadRequest(f"Code security check failed: {format_findings(critical)}")
    return JobScanned(job_id=job_id, verdict=report.verdict, findings=report.findings, scanner="static")


def _retry_policy(config: JobConfig, settings: Settings) -> RetryPolicy | None:
    """The job's own ``retries`` or the server's, on the server's reasons and the job's exit codes."""
    retries = settings.queue.retries if config.retries is None else config.retries
    if config.retry_on_exit_codes and retries == 0:
        raise BadRequest("Invalid field retry_on_exit_codes: needs retries of at least 1")
    return policy_for(retries, settings.queue.retry_on, config.retry_on_exit_codes)


async def _notify_request(config: JobConfig, user_id: str, job_id: str, intake: Intake) -> NotifyRequested | None:
    """The config's own targets, checked now (a 400 naming a bad one), or else the user's default
    (checked when it was set; one no longer allowed ends ``notify.failed``, it never refuses the job)."""
    targets = config.notify
    if targets is None:
        account = read_views(intake.ledger).shares.get(user_id)
        targets = account.notify if account is not None else []
    elif targets:
        try:  # apprise parses a service's URL, after its first import (about 0.1 s): off the event loop
            await asyncio.to_thread(check_all, targets, intake.settings.notify.allowed)
        except DomainError as e:
            raise BadRequest(str(e)) from e
    return NotifyRequested(job_id=job_id, targets=targets) if targets else None


def quota_limits(settings: Settings) -> QuotaLimits:
    return QuotaLimits(submissions=settings.queue.quota_submissions, gpu_hours=settings.queue.quota_gpu_hours)


def _review_pending(settings: Settings) -> bool:
    if not settings.scanner.enabled:
        return False
    return llm_review_enabled(settings.scanner)


async def read_submission(request: SubmitRequest, intake: Intake) -> tuple[bytes, JobConfig, Identity]:
    """The code (empty for a project), the config and the caller, checked as every submit checks them
    (a single job here, an array in ``api.arrays``)."""
    settings = intake.settings
    code, raw_config = _check_sizes(request, settings)
    # Bounded, but still up to tens of milliseconds for a hostile config: off the event loop.
    config = await asyncio.to_thread(
        parse_config,
        raw_config,
        max_expected_time=settings.queue.max_expected_time,
        largest_node=intake.cluster.largest_node_gpus(),
        cpu_slots=intake.cluster.has_cpu_slots(),
        largest_memory=intake.cluster.largest_node_memory(),
    )
    return code, config, _identity(request, config, intake)


async def submit(request: SubmitRequest, intake: Intake) -> Accepted:
    settings = intake.settings
    code, config, identity = await read_submission(request, intake)
    if config.array is not None or config.sweep is not None:
        raise BadRequest("Invalid config: array and sweep are submitted to POST /api/arrays (gpuledger submit does)")
    resume_from = project_intake.resume_source(read_views(intake.ledger), identity, config)
    job_id = str(ULID())
    notify = await _notify_request(config, identity.user_id, job_id, intake)
    project = project_blob = None
    if request.project is not None:
        project = await asyncio.to_thread(project_intake.check_project, request.project, config, settings)
        code = project.entry_code
        static, blob, project_blob = await asyncio.gather(
            asyncio.to_thread(project_intake.scan, project, job_id, settings),
            asyncio.to_thread(intake.blobs.put, code),
            asyncio.to_thread(intake.blobs.put, request.project),
        )
    else:
        static, blob = await _scan_and_store(code, job_id, intake)
    sanitized = {**config.sanitized(), "user_id": identity.user_id}  # the shape older jobs have
    # A project's archive counts too (a single file keeps the shape older idempotency keys were made with).
    notified = [config.notify] if config.notify is not None else []  # older submissions' fingerprints stay
    sent = [identity.user_id, blob.digest, sanitized, *notified, *([project_blob.digest] if project_blob else [])]
    fingerprint = hashlib.sha256(msgspec.json.encode(sent)).digest()
    key = f"{identity.user_id}:{request.idempotency_key}" if request.idempotency_key else None
    submitted = JobSubmitted(
        job_id=job_id,
        user_id=identity.user_id,
        competition_id=config.competition_id,
        project_id=config.project_id,
        expected_time_s=config.expected_time,
        code=blob,
        config=sanitized,
        idempotency_key=key,
        token_id=identity.token_id,
        client_address=request.client_address,
        gpus=config.gpus,
        retry=_retry_policy(config, settings),
        asked_priority=config.priority,
        memory=config.memory,
        resume_from=resume_from,
        project=project_blob,
        project_files=project.project.manifest if project else [],
        entrypoint=project.entrypoint if project else None,
        args=config.args,
        artifact_globs=config.artifacts,
        after=config.after,
    )
    exempt = identity.is_admin and settings.queue.admin_rate_limit_exempt
    limits = (
        None
        if exempt
        else commands.SubmitLimits(
            max_active=settings.queue.max_active_jobs_per_user,
            per_minute=settings.queue.rate_limit_per_minute,
            quotas=quota_limits(settings),
        )
    )
    committed = await intake.ledger.write(
        commands.submit_job(
            submitted,
            static_scan=static,
            review_pending=_review_pending(settings),
            limits=limits,
            now=now_us(),
            actor=identity.token_id,
            fingerprint=fingerprint,
            notify=notify,
            admin=identity.is_admin,
        )
    )
    accepted_id = stream_key_of(committed)
    warnings = config.warnings + project_intake.warnings_for(config, settings, project=project is not None)
    return Accepted(job=read_views(intake.ledger).jobs[accepted_id], warnings=warnings, replayed=committed.replayed)


async def _scan_and_store(code: bytes, job_id: str, intake: Intake) -> tuple[JobScanned | None, Blob]:
    """The single file's scan (a few ms of CPU) and blob write (an fsync) in worker threads, side by side,
    so the event loop keeps serving other requests meanwhile."""
    try:
        code_text = code.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"Code must be UTF-8 text (invalid byte at position {e.start})") from e
    return await asyncio.gather(
        asyncio.to_thread(_static_scan, code_text, job_id, intake.settings), asyncio.to_thread(intake.blobs.put, code)
    )


def stream_key_of(committed: Committed) -> str:
    """The job id of a committed submission (its first event is the job's own)."""
    return committed.records[0].event.stream_key


async def wait_terminal(ledger: LedgerWriter, job_id: str, timeout: float) -> JobState:
    """Wait for the job to end, woken by each commit, for at most ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen = ledger.head
                if read_views(ledger).jobs[job_id].is_terminal:
                    break
                await ledger.wait_beyond(seen)
    except TimeoutError:
        pass
    return read_views(ledger).jobs[job_id]
