"""Array endpoints: submit an array or sweep, its status, cancel it (or some tasks), cancel all your jobs.

Each bulk cancel is one write: every cancel it records is appended in one transaction.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.arrays import active_ids, array_tasks, chosen_tasks, submit_array
from api.arraywire import ArrayAccepted, ArrayStatus, ArrayTask, BulkCancelAnswer
from api.auth import Identity
from api.context import authenticated, limited, sent_identity, token_if_sent
from api.controllers.jobs import IdempotencyKey, _form, _part
from api.openapi import BEARER, BEARER_OR_ANONYMOUS, SubmitOperation, problems
from api.ports import Intake, LedgerWriter, Port, read_views
from api.submit import SubmitRequest
from ledger.domain.arrays import counts_of
from ledger.domain.events import JobCancelRequested
from ledger.store import arrays
from projections.views import Views

TasksSpec = Parameter(
    default=None, max_length=1000, pattern=r"^[0-9,:-]+$", description="Only the tasks with these indices (e.g. 5-9)"
)


async def _bulk_cancel(ledger: LedgerWriter, job_ids: list[str], identity: Identity) -> BulkCancelAnswer:
    committed = await ledger.write(arrays.cancel_jobs(job_ids, by=identity.user_id, actor=identity.token_id))
    cancelled = [r.event.stream_key for r in committed.records if isinstance(r.event, JobCancelRequested)]
    return BulkCancelAnswer(
        message=f"Cancel recorded for {len(cancelled)} job(s)", cancelled=len(cancelled), job_ids=cancelled
    )


class ArrayController(Controller):
    path = "/api"
    tags = ["arrays"]

    @post(
        "/arrays",
        status_code=200,
        guards=[limited("submit", then=token_if_sent)],
        summary="Submit a job array or a sweep (multipart, as /api/submit): one submission, many tasks",
        operation_class=SubmitOperation,
        security=BEARER_OR_ANONYMOUS,
        responses=problems(400, 401, 403, 408, 409, 413, 429),
    )
    async def submit_array(
        self,
        request: Request[Any, Any, Any],
        address: NamedDependency[str],
        intake: Port[Intake],
        array: str | None = Parameter(default=None, max_length=1000, description="The spec, e.g. 0-99%8"),
        idempotency_key: IdempotencyKey = None,
    ) -> ArrayAccepted:
        form = await _form(request, request.app.multipart_form_part_limit)
        code, config = await _part(form, "code"), await _part(form, "config_file")
        sent = SubmitRequest(
            code=code, config=config, identity=sent_identity(request), idempotency_key=idempotency_key,
            client_address=address, project=await _part(form, "project"),
        )  # fmt: skip
        accepted = await submit_array(sent, intake, array)
        return ArrayAccepted(
            array_id=accepted.array_id,
            tasks=accepted.tasks,
            width=accepted.width,
            message=f"Array submitted: {accepted.tasks} task(s), at most {accepted.width} at once. "
            f"Use /api/arrays/{accepted.array_id} to check progress.",
            warnings=accepted.warnings,
        )

    @get(
        "/arrays/{array_id:str}",
        guards=[limited("status", then=authenticated)],
        summary="An array's tasks: counts per status and each task",
        operation_id="arrayStatus",
        security=BEARER,
        responses=problems(401, 404, 429),
    )
    async def status(
        self, views: NamedDependency[Views], identity: NamedDependency[Identity], array_id: FromPath[str]
    ) -> ArrayStatus:
        tasks = array_tasks(views, identity, array_id)
        counts = counts_of(tasks)
        return ArrayStatus(
            array_id=tasks[0].array_id or array_id,
            user_id=tasks[0].user_id,
            tasks=len(tasks),
            width=tasks[0].array_width,
            counts=counts,
            done=counts["pending"] + counts["running"] == 0,
            task_list=[
                ArrayTask(
                    job_id=t.job_id,
                    index=t.array_index or 0,
                    status=t.status,
                    phase=t.phase,
                    reason=t.reason,
                    exit_code=t.exit_code,
                    params=t.params,
                )
                for t in tasks
            ],
        )

    @post(
        "/arrays/{array_id:str}/cancel",
        status_code=200,
        guards=[limited("cancel", then=authenticated)],
        summary="Cancel an array's tasks (all, or those with the given indices) in one write",
        operation_id="cancelArray",
        security=BEARER,
        responses=problems(400, 401, 404, 409, 429),
    )
    async def cancel(
        self,
        ledger: Port[LedgerWriter],
        identity: NamedDependency[Identity],
        array_id: FromPath[str],
        tasks: str | None = TasksSpec,
    ) -> BulkCancelAnswer:
        chosen = chosen_tasks(array_tasks(read_views(ledger), identity, array_id), tasks)
        return await _bulk_cancel(ledger, [t.job_id for t in chosen], identity)

    @post(
        "/cancel-all",
        status_code=200,
        guards=[limited("cancel", then=authenticated)],
        summary="Cancel every job of yours not yet ended, in one write",
        operation_id="cancelAll",
        security=BEARER,
        responses=problems(401, 409, 429),
    )
    async def cancel_all(self, ledger: Port[LedgerWriter], identity: NamedDependency[Identity]) -> BulkCancelAnswer:
        return await _bulk_cancel(ledger, active_ids(read_views(ledger), identity.user_id), identity)
