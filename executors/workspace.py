"""What a job finds in its workdir when it starts: its single file, or its project unpacked, and then the
artifacts of the job it resumes from at their own relative paths (``outputs/...``).

Everything goes through the transport's ``put_files`` (local writes, SFTP to SSH and Slurm nodes), one
call per directory; the archive was checked at submit and is read again here with the same checks.
"""

from __future__ import annotations

import posixpath

import structlog

from executors import protocol as wp
from executors.transport import Transport
from ledger.domain.jobs import JobState
from ledger.store.blobs import BlobStore
from ledger.store.projects import Project, directories, read_project
from projections.views import Views

log = structlog.get_logger()


async def lay_out(transport: Transport, blobs: BlobStore, views: Views, job: JobState, job_dir: str) -> None:
    """Put the job's files into ``job_dir``: ``solution.py``, or the project with its entrypoint."""
    if job.project is not None:
        await _put_tree(transport, job_dir, read_project(blobs.get(job.project) or b""))
    else:
        await transport.put_files(job_dir, {wp.SOLUTION_NAME: blobs.get(job.code) or b""})
    source = views.jobs.get(job.resume_from) if job.resume_from else None
    if source is not None and source.artifacts_pruned_at is not None:  # pruned since the submit said yes
        log.warning("job.resume_pruned", job_id=job.job_id, resume_from=source.job_id)
    elif source is not None and source.artifacts:
        await _put_tree(transport, job_dir, resumed_files(blobs, source))


def resumed_files(blobs: BlobStore, source: JobState) -> Project:
    """The earlier job's artifacts, by their paths in its workdir."""
    return Project(files={a.path: blobs.path(a.digest).read_bytes() for a in source.artifacts})


async def _put_tree(transport: Transport, job_dir: str, project: Project) -> None:
    for directory, files in directories(project).items():
        await transport.put_files(posixpath.join(job_dir, directory) if directory else job_dir, files)
