"""A job's GPU telemetry for its owner and admins: the samples beside the ledger, and the summary."""

from __future__ import annotations

import asyncio

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.auth import Identity, check_user_filter
from api.context import authenticated
from api.errors import BadRequest
from api.openapi import BEARER, problems
from api.ports import EventLog, Port, read_views
from api.present import gpu_use
from api.schemas import GpuPoint, JobGpu
from ledger.domain.clock import DURATION_HELP, duration_s, iso, now_us, parse_iso
from ledger.domain.jobs import JobState
from ledger.store.gpu_series import GpuSeries, SeriesPoint
from ledger.store.settings import Settings
from projections.gpu_usage import GpuUsage, gpu_usage

USAGE_USERS = 1000  # user rows of one usage answer at most (largest first)


def gpu_point(point: SeriesPoint) -> GpuPoint:
    return GpuPoint(
        at=iso(int(point.t * 1e6)) or "",
        attempt=point.attempt,
        index=point.index,
        util=point.util,
        mem_used_mib=point.mem_used,
        mem_total_mib=point.mem_total,
        power_w=point.power,
    )


class GpuController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]
    guards = [authenticated]

    @get(
        "/{job_id:str}/gpu",
        summary="The job's GPU samples (newest `limit`, oldest first) and its GPU summary",
        operation_id="jobGpu",
        security=BEARER,
        responses=problems(400, 401, 404),
    )
    async def job_gpu(
        self,
        settings: NamedDependency[Settings],
        job_id: FromPath[str],
        job: NamedDependency[JobState],
        limit: int = Parameter(default=500, ge=1, le=5000, description="At most this many samples (the newest)"),
    ) -> JobGpu:
        series = GpuSeries(settings.storage.jobs_dir, settings.gpu.series_points)
        points = await asyncio.to_thread(series.read, job.job_id)
        return JobGpu(
            job_id=job.job_id,
            gpus=job.charged_gpus,
            status=job.status,
            gpu_idle=job.gpu_idle,
            summary=gpu_use(job.gpu),
            points=[gpu_point(p) for p in points[-limit:]],
            total_points=len(points),
        )


def since_us(text: str, now: int) -> int:
    """``since``: a duration back from now (``7d``, ``12h``) or an ISO-8601 instant; 400 otherwise."""
    try:
        return now - duration_s(text) * 1_000_000
    except ValueError:
        pass
    try:
        return parse_iso(text)
    except ValueError:
        raise BadRequest(f"Invalid since {text!r}: a duration ({DURATION_HELP}) or an ISO-8601 time") from None


class UsageController(Controller):
    path = "/api/usage"
    tags = ["usage"]
    guards = [authenticated]

    @get(
        "/gpu",
        summary="GPU-hours held vs used, peak vs card memory: per user and per job (yours; admins: anyone's)",
        operation_id="gpuUsage",
        security=BEARER,
        responses=problems(400, 401, 403),
    )
    async def gpu(
        self,
        events: Port[EventLog],
        identity: NamedDependency[Identity],
        user_id: str | None = Parameter(default=None, max_length=128, description="Admins: one user's usage"),
        since: str = Parameter(default="7d", max_length=64, description="A duration back (7d, 12h) or an ISO time"),
        limit: int = Parameter(default=50, ge=1, le=1000, description="At most this many job rows (largest first)"),
    ) -> GpuUsage:
        only_user = check_user_filter(identity, user_id)
        now = now_us()
        start = since_us(since, now)
        views = read_views(events)
        finished = await asyncio.to_thread(views.finished_since, start)
        return gpu_usage(finished, since=start, user_id=only_user, users=USAGE_USERS, limit=limit)
