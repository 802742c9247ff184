"""Job endpoints of the original API: submit, status, results, cancel, list; plus the job's events."""

from __future__ import annotations

from typing import Annotated, Any, get_args

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import FromPath, HeaderParameter, Parameter

from api.auth import Identity, check_user_filter
from api.context import authenticated, limited, sent_identity, token_if_sent
from api.errors import BadRequest, PayloadTooLarge
from api.openapi import BEARER, BEARER_OR_ANONYMOUS, Documented, SubmitOperation, problems
from api.ports import EventLog, Intake, JobOutput, LedgerWriter, Plans, Port, read_views
from api.present import job_status, node_index
from api.schemas import (
    CancelAnswer,
    EventEntry,
    EventList,
    JobList,
    JobResults,
    JobStatus,
    SubmitAccepted,
    SubmitFinished,
    SubmitTimedOut,
)
from api.submit import SubmitRequest, submit, wait_terminal
from ledger.domain.clock import iso, now_us
from ledger.domain.events import event_tag
from ledger.domain.jobs import JobState, Status
from ledger.store import commands
from ledger.store.settings import Settings
from projections.views import Views

CANCEL_WAIT_S = 15.0
STATUSES = get_args(Status)
SUBMITTED_MESSAGE = "Job submitted successfully. Use /api/status/{job_id} to check progress."


async def _form(request: Request[Any, Any, Any], part_limit: int) -> Any:
    """The multipart form; too many parts is a 413, a text part not in its charset a 400."""
    try:
        return await request.form()
    except ClientException as e:
        if e.detail == "Request Entity Too Large":  # Litestar's part limit, sent as a 400 before Litestar 3
            raise PayloadTooLarge(f"Too many multipart parts: at most {part_limit}") from None
        raise
    except (UnicodeDecodeError, LookupError):
        raise BadRequest("A multipart form field is not text in its declared charset") from None


async def _part(form: Any, name: str) -> bytes | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, UploadFile):
        return await value.read()
    return str(value).encode()


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Resubmitting with the same key returns the first job instead of a new one",
    ),
]


def unknown_user_hint(views: Views, user_id: str, identity: Identity) -> list[str]:
    """Why an admin's ``user_id`` filter found nothing, when the id is no user the ledger knows (the old
    server's ``?user_id=admin_user`` habit: here an admin sees everyone's jobs by leaving it out)."""
    if not identity.is_admin or user_id in views.users or any(t.user_id == user_id for t in views.tokens.values()):
        return []
    return [
        f"no user {user_id!r} is known (no token, no jobs): user_id filters by the jobs' owner; "
        "leave it out to list every user's jobs (admins)"
    ]


class JobController(Controller):
    path = "/api"
    tags = ["jobs"]

    @post(
        "/submit",
        status_code=200,
        guards=[limited("submit", then=token_if_sent)],
        summary="Submit a solution and its config (multipart)",
        description="Authenticate with the Authorization header, or (old clients) a token in the config.",
        operation_class=SubmitOperation,
        security=BEARER_OR_ANONYMOUS,
        responses=problems(400, 401, 403, 408, 409, 413, 429),
    )
    async def submit_job(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        address: NamedDependency[str],
        intake: Port[Intake],
        output: Port[JobOutput],
        ledger: Port[LedgerWriter],
        wait: bool = Parameter(default=True, description="Answer when the job has finished (or timed out)"),
        idempotency_key: IdempotencyKey = None,
    ) -> SubmitAccepted | SubmitFinished | SubmitTimedOut:
        form = await _form(request, request.app.multipart_form_part_limit)
        code, config = await _part(form, "code"), await _part(form, "config_file")
        identity = sent_identity(request)
        sent = SubmitRequest(
            code=code,
            config=config,
            identity=identity,
            idempotency_key=idempotency_key,
            client_address=address,
            project=await _part(form, "project"),
        )
        accepted = await submit(sent, intake)  # the request read whole first: the pipeline goes one way, down
        job = accepted.job
        if not wait:
            return SubmitAccepted(
                job_id=job.job_id,
                node_id=node_index(read_views(ledger), job.node),
                status=job.status,
                message=SUBMITTED_MESSAGE.format(job_id=job.job_id),
                created_at=iso(job.created_at),
                warnings=accepted.warnings,
            )
        timeout = settings.queue.sync_wait_timeout
        job = await wait_terminal(ledger, job.job_id, timeout)
        node_id = node_index(read_views(ledger), job.node)
        if not job.is_terminal:
            return SubmitTimedOut(
                job_id=job.job_id,
                node_id=node_id,
                status=job.status,
                warnings=accepted.warnings,
                message=f"Timeout after {timeout:g}s. Job still {job.status}. "
                f"Use /api/results/{job.job_id} to check later.",
            )
        results = output.results(job)
        return SubmitFinished(
            job_id=job.job_id,
            node_id=node_id,
            status=job.status,
            stdout=results.stdout,
            stderr=results.stderr,
            exit_code=job.exit_code,
            results=results.results,
            started_at=results.started_at,
            completed_at=results.completed_at,
            warnings=accepted.warnings,
            truncated=results.truncated,
            signal=results.signal,
            reason=results.reason,
            results_file=results.results_file,
            message=results.message,
        )

    @get(
        "/status/{job_id:str}",
        guards=[limited("status", then=authenticated)],
        summary="A job's status, phase, queue position and estimated start",
        operation_id="jobStatus",
        security=BEARER,
        responses=problems(400, 401, 404, 429),
    )
    async def status(
        self,
        plans: Port[Plans],
        ledger: Port[LedgerWriter],
        views: NamedDependency[Views],
        job_id: FromPath[str],
        job: NamedDependency[JobState],
    ) -> JobStatus:
        return job_status(job, views, await plans.including(job, views, ledger.head))

    @get(
        "/results/{job_id:str}",
        guards=[limited("results", then=authenticated)],
        summary="Console output, exit code and results file of a job",
        operation_id="jobResults",
        security=BEARER,
        responses=problems(400, 401, 404, 429),
    )
    async def results(
        self, output: Port[JobOutput], job_id: FromPath[str], job: NamedDependency[JobState]
    ) -> JobResults:
        return output.results(job)

    @post(
        "/cancel/{job_id:str}",
        status_code=200,
        guards=[limited("cancel", then=authenticated)],
        summary="Cancel a pending or running job",
        operation_id="cancelJob",
        security=BEARER,
        responses=problems(400, 401, 404, 409, 429),
    )
    async def cancel(
        self,
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        job_id: FromPath[str],
        job: NamedDependency[JobState],
    ) -> CancelAnswer:
        job_id = job.job_id  # the full id of a prefix
        await ledger.write(commands.cancel_job(job_id, by=identity.user_id, actor=identity.token_id))
        # Answer once the cancel is true (the runner kills within its grace period), else say where it is.
        job = await wait_terminal(ledger, job_id, CANCEL_WAIT_S)
        status = job.status if job.is_terminal else "cancelling"
        message = "Job cancelled successfully" if job.is_terminal else "Job is being cancelled"
        return CancelAnswer(message=message, status=status, job_id=job_id)

    @get(
        "/jobs",
        guards=[limited("jobs", then=authenticated)],
        summary="Jobs, newest first: your own, or (admins) everyone's",
        operation_class=Documented,
        security=BEARER,
        responses=problems(400, 401, 403, 429),
    )
    async def list_jobs(
        self,
        plans: Port[Plans],
        views: NamedDependency[Views],
        identity: NamedDependency[Identity],
        user_id: str | None = Parameter(default=None, max_length=128, description="Admins: one user's jobs"),
        # Text checked here: typed as Status | None, Litestar would read "status=null" as no filter.
        status: str | None = Parameter(
            default=None, description="Only jobs in this status", schema_extra={"enum": list(STATUSES)}
        ),
        limit: int = Parameter(default=50, ge=1, le=1000, description="At most this many jobs"),
    ) -> JobList:
        if status is not None and status not in STATUSES:
            raise BadRequest(f"Invalid query parameter status: must be one of {', '.join(STATUSES)}")
        only_user = check_user_filter(identity, user_id)
        plan = plans.get(views, now_us())
        picked = views.newest_jobs(user_id=only_user, status=status, limit=limit)
        warnings = [] if picked or only_user is None else unknown_user_hint(views, only_user, identity)
        return JobList(jobs=[job_status(job, views, plan) for job in picked], warnings=warnings)

    @get(
        "/jobs/{job_id:str}/events",
        guards=[authenticated],
        summary="The job's ledger events: its audit trail",
        operation_id="jobEvents",
        security=BEARER,
        responses=problems(400, 401, 404),
    )
    async def job_events(
        self, events: Port[EventLog], job_id: FromPath[str], job: NamedDependency[JobState]
    ) -> EventList:
        job_id = job.job_id  # the full id of a prefix
        return EventList(
            job_id=job_id,
            events=[
                EventEntry(
                    position=r.position,
                    recorded_at=iso(r.recorded_at),
                    type=event_tag(r.event),
                    actor=r.actor,
                    stream=r.stream,
                    event=msgspec.to_builtins(r.event),
                )
                for r in events.stream(f"job-{job_id}")
            ],
        )
