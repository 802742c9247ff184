"""A job's own files for its owner and admins: the submitted code and config, and the results file."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.context import authenticated
from api.openapi import BEARER, problems
from api.ports import EventLog, JobOutput, Port
from ledger.domain.errors import NotFound
from ledger.domain.events import JobSubmitted
from ledger.domain.jobs import JobState
from ledger.store.retention import pruned_message


class JobFilesController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]
    guards = [authenticated]

    @get(
        "/{job_id:str}/submission",
        summary="The code and config the job was submitted with (its owner and admins)",
        operation_id="jobSubmission",
        security=BEARER,
        responses=problems(400, 401, 404),
    )
    async def submission(
        self,
        output: Port[JobOutput],
        events: Port[EventLog],
        job_id: FromPath[str],
        job: NamedDependency[JobState],
    ) -> dict[str, Any]:
        submitted = next((r.event for r in events.stream(f"job-{job_id}") if isinstance(r.event, JobSubmitted)), None)
        code = output.code(job)
        return {
            "job_id": job_id,
            "code": code.decode("utf-8", errors="replace"),
            "config": submitted.config if submitted is not None else {},
        }

    @get(
        "/{job_id:str}/results-file",
        summary="The job's results file as written (404 when the job wrote none)",
        operation_id="jobResultsFile",
        security=BEARER,
        media_type="application/x-ndjson",
        responses=problems(400, 401, 404),
    )
    async def results_file(
        self, output: Port[JobOutput], job_id: FromPath[str], job: NamedDependency[JobState]
    ) -> Response[bytes]:
        if job.pruned_at is not None and job.results is not None:
            raise NotFound(f"Job {job_id}'s results file is gone: {pruned_message(job)}")
        data = output.results_file(job)
        if data is None:
            raise NotFound(f"Job {job_id} has no results file")
        name = PurePosixPath(job.results_file).name if job.results_file else f"{job_id}-results.jsonl"
        return Response(
            data,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
