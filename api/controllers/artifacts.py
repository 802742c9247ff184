"""A job's artifacts for its owner and admins: the list, and each file streamed from the blob store.

Every lookup goes through the ``job`` dependency, which answers 404 for another user's job, so neither
the list nor a file tells anyone else that the job (or the path) exists.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File

from api.context import authenticated
from api.openapi import BEARER, problems
from api.ports import JobOutput, Port
from api.schemas import ArtifactInfo, ArtifactList
from ledger.domain.errors import NotFound
from ledger.domain.jobs import JobState
from ledger.store.retention import artifacts_pruned_message


def artifact_list(job: JobState) -> ArtifactList:
    return ArtifactList(
        job_id=job.job_id,
        artifacts=[ArtifactInfo(path=a.path, size=a.size, digest=a.digest) for a in job.artifacts],
        bytes=sum(a.size for a in job.artifacts),
        skipped=job.artifacts_skipped,
        pruned=job.artifacts_pruned_at is not None,
        message=artifacts_pruned_message(job),
        resume_from=job.resume_from,
    )


class ArtifactController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]
    guards = [authenticated]

    @get(
        "/{job_id:str}/artifacts",
        summary="The files the job left under outputs/ (and its artifacts: globs), kept after it ended",
        operation_id="jobArtifacts",
        security=BEARER,
        responses=problems(400, 401, 404),
    )
    async def artifacts(self, job_id: FromPath[str], job: NamedDependency[JobState]) -> ArtifactList:
        return artifact_list(job)

    @get(
        "/{job_id:str}/artifacts/{path:path}",
        summary="One artifact's bytes, as the job wrote them",
        operation_id="jobArtifact",
        security=BEARER,
        media_type="application/octet-stream",
        responses=problems(400, 401, 404),
    )
    async def artifact(
        self, output: Port[JobOutput], job_id: FromPath[str], path: FromPath[str], job: NamedDependency[JobState]
    ) -> File:
        wanted = path.lstrip("/")
        found = output.artifact_file(job, wanted)
        if found is None:
            pruned = artifacts_pruned_message(job)
            raise NotFound(f"Job {job_id} has no artifact {wanted}" + (f": {pruned}" if pruned else ""))
        artifact, stored = found
        return File(
            path=stored,
            filename=PurePosixPath(artifact.path).name,
            media_type="application/octet-stream",
            headers={"X-Artifact-Digest": artifact.digest},
        )
