"""Job arrays and sweeps through the API: one submit writes the array and all its tasks; status and
cancel take the array as a whole (docs/user-guide.md, "Job arrays and sweeps")."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
from ulid import ULID

from api import project_intake
from api.auth import Identity
from api.errors import BadRequest
from api.jobconfig import JobConfig
from api.ports import Intake, read_views
from api.submit import (  # the single-job pipeline's steps, shared as they are
    SubmitRequest,
    _retry_policy,
    _review_pending,
    _static_scan,
    quota_limits,
    read_submission,
)
from ledger.domain.arrays import (
    ArraySpec,
    array_id_from,
    expand_sweep,
    is_array_id,
    parse_array_spec,
    task_id,
)
from ledger.domain.clock import now_us
from ledger.domain.errors import NotFound
from ledger.domain.events import ArraySubmitted, Blob, JobScanned, JobSubmitted
from ledger.domain.jobs import JobState
from ledger.domain.tokens import may_see
from ledger.store import arrays, commands
from ledger.store.settings import Settings
from projections.views import Views

SWEEP_SPEC = "sweep"  # the spec recorded for a sweep submitted without ``array``


@dataclass(frozen=True)
class ArrayAccepted:
    array_id: str
    tasks: int
    width: int
    replayed: bool
    warnings: list[str]


def _spec(config: JobConfig, asked: str | None, max_tasks: int) -> tuple[str, ArraySpec, list[dict[str, Any]] | None]:
    """The spec as written, its reading, and a sweep's parameter sets (None for a plain array)."""
    if asked is not None and config.array is not None and asked != config.array:
        raise BadRequest(f"Invalid field array: the config says {config.array!r}, the request {asked!r}")
    text = asked if asked is not None else config.array
    sets = expand_sweep(config.sweep, max_tasks=max_tasks) if config.sweep is not None else None
    if text is None and sets is None:
        raise BadRequest("An array needs a spec (array: 0-99%8, or --array) or a sweep: in the config")
    spec = parse_array_spec(text or "", max_tasks=max_tasks, default_count=None if sets is None else len(sets))
    return text or SWEEP_SPEC, spec, sets


def _tasks(
    template: JobSubmitted, array_id: str, spec: ArraySpec, sets: list[dict[str, Any]] | None
) -> list[JobSubmitted]:
    replace = msgspec.structs.replace
    return [
        replace(
            template,
            job_id=task_id(array_id, ordinal),
            array_id=array_id,
            array_index=index,
            array_task=ordinal,
            params=None if sets is None else sets[ordinal],
        )
        for ordinal, index in enumerate(spec.indices)
    ]


@dataclass(frozen=True)
class _Code:
    """What every task runs, checked and stored once: its code blob and, for a project, the archive's."""

    scanned: JobScanned | None
    blob: Blob
    project: project_intake.ProjectIntake | None = None
    project_blob: Blob | None = None


async def _checked_code(request: SubmitRequest, code: bytes, config: JobConfig, array_id: str, intake: Intake) -> _Code:
    """One scan and one store for the whole array: the single file, or the project (checked as
    /api/submit checks it: 413 past its cap, 400 naming a hostile member, every .py scanned)."""
    settings = intake.settings
    if request.project is None:
        try:
            text = code.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRequest(f"Code must be UTF-8 text (invalid byte at position {e.start})") from e
        scanned, blob = await asyncio.gather(
            asyncio.to_thread(_static_scan, text, array_id, settings), asyncio.to_thread(intake.blobs.put, code)
        )
        return _Code(scanned=scanned, blob=blob)
    project = await asyncio.to_thread(project_intake.check_project, request.project, config, settings)
    scanned, blob, project_blob = await asyncio.gather(
        asyncio.to_thread(project_intake.scan, project, array_id, settings),
        asyncio.to_thread(intake.blobs.put, project.entry_code),
        asyncio.to_thread(intake.blobs.put, request.project),
    )
    return _Code(scanned=scanned, blob=blob, project=project, project_blob=project_blob)


def _limits(identity: Identity, settings: Settings) -> commands.SubmitLimits | None:
    if identity.is_admin and settings.queue.admin_rate_limit_exempt:
        return None
    return commands.SubmitLimits(
        max_active=settings.queue.max_active_jobs_per_user,
        per_minute=settings.queue.rate_limit_per_minute,
        quotas=quota_limits(settings),
    )


def _template(
    request: SubmitRequest, config: JobConfig, identity: Identity, code: _Code, resume_from: str | None,
    settings: Settings,
) -> JobSubmitted:  # fmt: skip
    """What every task's ``job.submitted`` shares (its id and place in the array are set per task)."""
    return JobSubmitted(
        job_id="",
        user_id=identity.user_id,
        competition_id=config.competition_id,
        project_id=config.project_id,
        expected_time_s=config.expected_time,
        code=code.blob,
        config={**config.sanitized(), "user_id": identity.user_id},
        token_id=identity.token_id,
        client_address=request.client_address,
        gpus=config.gpus,
        retry=_retry_policy(config, settings),
        asked_priority=config.priority,
        memory=config.memory,
        resume_from=resume_from,
        project=code.project_blob,
        project_files=code.project.project.manifest if code.project else [],
        entrypoint=code.project.entrypoint if code.project else None,
        args=config.args,
        artifact_globs=config.artifacts,
        after=config.after,
    )


async def submit_array(request: SubmitRequest, intake: Intake, asked: str | None) -> ArrayAccepted:
    """The submit pipeline of ``api.submit`` for an array: one scan, one code blob (and project), one write."""
    settings = intake.settings
    code, config, identity = await read_submission(request, intake)
    text, spec, sets = _spec(config, asked, settings.queue.array_max_tasks)
    resume_from = project_intake.resume_source(read_views(intake.ledger), identity, config)
    array_id = array_id_from(str(ULID()))
    checked = await _checked_code(request, code, config, array_id, intake)
    template = _template(request, config, identity, checked, resume_from, settings)
    tasks = _tasks(template, array_id, spec, sets)
    array = ArraySubmitted(
        array_id=array_id,
        user_id=identity.user_id,
        spec=text,
        tasks=len(tasks),
        width=0,
        max_running=spec.max_running,
        after=config.after,
    )
    # A project's archive counts too; a single file keeps the fingerprint older arrays were made with.
    extra = [checked.project_blob.digest] if checked.project_blob else []
    fingerprint = msgspec.json.encode([identity.user_id, checked.blob.digest, template.config, text, sets, *extra])
    committed = await intake.ledger.write(
        arrays.submit_array(
            array,
            tasks,
            static_scan=checked.scanned,
            review_pending=_review_pending(settings),
            limits=_limits(identity, settings),
            now=now_us(),
            actor=identity.token_id,
            idempotency_key=f"{identity.user_id}:{request.idempotency_key}" if request.idempotency_key else None,
            fingerprint=hashlib.sha256(fingerprint).digest(),
            admin=identity.is_admin,
        )
    )
    first = committed.records[0].event
    assert isinstance(first, ArraySubmitted)
    return ArrayAccepted(
        array_id=first.array_id, tasks=first.tasks, width=first.width, replayed=committed.replayed,
        warnings=config.warnings + project_intake.warnings_for(config, settings, project=checked.project is not None),
    )  # fmt: skip


def array_tasks(views: Views, identity: Identity, array_id: str) -> list[JobState]:
    """The array's tasks in index order; another user's array is "not found", as for a job."""
    text = array_id.upper()
    if not is_array_id(text):
        raise NotFound(f"Array {array_id} not found")
    mine = None if identity.is_admin else identity.user_id
    ids = views.jobs.ids_with_prefix(text[:20], mine, 1 + 100_000)
    tasks = [job for job in map(views.jobs.get, ids) if job is not None and job.array_id == text]
    if not tasks or not may_see(identity, tasks[0].user_id):
        raise NotFound(f"Array {array_id} not found")
    return tasks


def chosen_tasks(tasks: list[JobState], which: str | None) -> list[JobState]:
    """``--tasks 5-9``: the tasks whose index the spec names (all without one)."""
    if which is None:
        return tasks
    wanted = set(parse_array_spec(which, max_tasks=len(tasks) + 1_000_000).indices)
    chosen = [task for task in tasks if task.array_index in wanted]
    if not chosen:
        raise BadRequest(f"Invalid tasks {which!r}: no task of the array has those indices")
    return chosen


def active_ids(views: Views, user_id: str) -> list[str]:
    """The user's jobs not yet ended (``cancel --all``), oldest first."""
    return [job.job_id for job in views.active_jobs() if job.user_id == user_id]
