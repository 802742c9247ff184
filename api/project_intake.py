"""The project half of a submission: the archive's size and contents, its entrypoint, its scan, and the
job it resumes from. A single-file submission never comes here.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import Identity
from api.context import resolve_job
from api.errors import BadRequest, PayloadTooLarge
from api.jobconfig import JobConfig
from executors.scan.project import scan_project
from executors.scan.scanner import format_findings
from ledger.domain.events import JobScanned
from ledger.store.projects import Project, read_project
from ledger.store.settings import Settings
from projections.views import Views

LARGEST_SHOWN = 5


@dataclass(frozen=True)
class ProjectIntake:
    """A checked project: its files, and the entrypoint's bytes (the job's ``code``, as a file job's)."""

    project: Project
    entrypoint: str
    entry_code: bytes


def _too_large(project: Project, size: int, limit: int) -> PayloadTooLarge:
    largest = sorted(project.files.items(), key=lambda item: (-len(item[1]), item[0]))[:LARGEST_SHOWN]
    shown = ", ".join(f"{path} ({len(data)} bytes)" for path, data in largest)
    return PayloadTooLarge(
        f"Project too large: {size} bytes (maximum PROJECT_MAX_BYTES {limit}); largest files: {shown}"
    )


def check_project(data: bytes, config: JobConfig, settings: Settings) -> ProjectIntake:
    """The archive read and checked (a 400 naming a member that may not be unpacked, 413 past the limit)."""
    project = read_project(data)
    limit = settings.queue.project_max_bytes
    if len(data) > limit:
        raise _too_large(project, len(data), limit)
    if config.entrypoint is None:
        raise BadRequest("Missing required field: entrypoint (the project's file that runs, e.g. train.py)")
    entry = project.files.get(config.entrypoint)
    if entry is None:
        raise BadRequest(f"Invalid field entrypoint: {config.entrypoint!r} is not a file of the project")
    return ProjectIntake(project=project, entrypoint=config.entrypoint, entry_code=entry)


def scan(intake: ProjectIntake, job_id: str, settings: Settings) -> JobScanned | None:
    """Every Python file of the project, within the scan budget; a critical finding is a 400."""
    if not settings.scanner.enabled:
        return None
    report = scan_project(intake.project.files, intake.entrypoint)
    if report.verdict == "rejected":
        critical = [f for f in report.findings if f.severity == "critical"]
        raise BadRequest(f"Code security check failed: {format_findings(critical)}")
    return JobScanned(job_id=job_id, verdict=report.verdict, findings=report.findings, scanner="static")


def resume_source(views: Views, identity: Identity, config: JobConfig) -> str | None:
    """The full id of the job to resume from: the caller's own (or, for an admin, anyone's), ended, with
    its artifacts still kept. Another user's job is "not found", as everywhere."""
    if config.resume_from is None:
        return None
    job = resolve_job(views, identity, config.resume_from)
    if not job.is_terminal:
        raise BadRequest(f"Invalid field resume_from: job {job.job_id} has not ended yet ({job.status})")
    if job.artifacts_pruned_at is not None:
        raise BadRequest(f"Invalid field resume_from: job {job.job_id}'s artifacts were removed by retention")
    return job.job_id


def warnings_for(config: JobConfig, settings: Settings, *, project: bool) -> list[str]:
    """Fields that would otherwise be silently without effect."""
    found = []
    if config.args and "{args}" not in settings.runner.command:
        found.append("args are not passed on: the server's JOB_COMMAND has no {args}")
    if config.entrypoint is not None and not project:
        found.append("entrypoint ignored: a single file runs as it is (submit a directory to name one)")
    return found
