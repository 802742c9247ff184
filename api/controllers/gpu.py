"""A job's GPU telemetry for its owner and admins: the samples beside the ledger, and the summary."""

from __future__ import annotations

import asyncio

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.context import authenticated
from api.openapi import BEARER, problems
from api.present import gpu_use
from api.schemas import GpuPoint, JobGpu
from ledger.domain.clock import iso
from ledger.domain.jobs import JobState
from ledger.store.gpu_series import GpuSeries, SeriesPoint
from ledger.store.settings import Settings


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
