"""GPU usage in the open: per user and per job, GPU-hours held vs used, peak vs card memory.

Read from the jobs that finished in a window (``Views.finished_since``, the ``completed_at`` index),
each with the summary its last attempt ended with (``job.gpu_summary``). Held time is what was
charged: the GPUs the attempt held times its run, so a ``gpus: 0`` job, or one on a node without GPUs
(``gpus_held`` 0), holds and uses none. Used time is known only for jobs with telemetry; the rest is
counted apart (``gpu_hours_unmeasured``), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger.domain.clock import iso
from ledger.domain.jobs import JobState


class GpuUserUsage(msgspec.Struct, kw_only=True):
    user_id: str
    jobs: int  # jobs that ended in the window
    gpu_jobs: int  # of them, jobs that held a GPU
    gpu_hours_held: float
    gpu_hours_used: float  # of the jobs with telemetry: held time weighted by utilisation
    gpu_hours_unmeasured: float  # held by jobs without telemetry (no driver, no samples)


class GpuJobUsage(msgspec.Struct, kw_only=True):
    job_id: str
    user_id: str
    status: str
    gpus: int
    gpu_hours_held: float
    gpu_hours_used: float | None  # None: no telemetry
    mean_util: float | None = None
    peak_mem_mib: int | None = None
    card_mem_mib: int | None = None


class GpuUsage(msgspec.Struct, kw_only=True):
    since: str | None  # jobs that ended at or after this instant
    users: list[GpuUserUsage]  # by GPU-hours held, largest first
    jobs: list[GpuJobUsage]  # the ``limit`` largest by GPU-hours held
    jobs_total: int


def job_usage(job: JobState) -> GpuJobUsage:
    """One ended job's held and used GPU-hours (its last attempt), from its summary where it has one."""
    summary = job.gpu
    run_us = (job.completed_at or 0) - job.started_at if job.started_at is not None else 0
    held_s = summary.held_gpu_s if summary is not None else job.charged_gpus * max(0, run_us) / 1e6
    return GpuJobUsage(
        job_id=job.job_id,
        user_id=job.user_id,
        status=job.status,
        gpus=job.charged_gpus,
        gpu_hours_held=round(held_s / 3600, 6),
        # No GPU held: nothing used, known without telemetry.
        gpu_hours_used=(0.0 if job.charged_gpus == 0 else None)
        if summary is None
        else round(summary.used_gpu_s / 3600, 6),
        mean_util=None if summary is None else summary.mean_util,
        peak_mem_mib=None if summary is None else summary.peak_mem_mib,
        card_mem_mib=None if summary is None else summary.card_mem_mib,
    )


def gpu_usage(jobs: Iterable[JobState], *, since: int, user_id: str | None, users: int, limit: int) -> GpuUsage:
    """The window's figures: at most ``users`` user rows and ``limit`` job rows (both largest first)."""
    rows = [job_usage(j) for j in jobs if j.is_terminal and (user_id is None or j.user_id == user_id)]
    by_user: dict[str, GpuUserUsage] = {}
    for row in rows:
        u = by_user.setdefault(
            row.user_id,
            GpuUserUsage(
                user_id=row.user_id,
                jobs=0,
                gpu_jobs=0,
                gpu_hours_held=0.0,
                gpu_hours_used=0.0,
                gpu_hours_unmeasured=0.0,
            ),
        )
        u.jobs += 1
        u.gpu_jobs += row.gpus > 0
        u.gpu_hours_held += row.gpu_hours_held
        if row.gpu_hours_used is None:
            u.gpu_hours_unmeasured += row.gpu_hours_held
        else:
            u.gpu_hours_used += row.gpu_hours_used
    for u in by_user.values():
        u.gpu_hours_held, u.gpu_hours_used = round(u.gpu_hours_held, 6), round(u.gpu_hours_used, 6)
        u.gpu_hours_unmeasured = round(u.gpu_hours_unmeasured, 6)
    ranked = sorted(by_user.values(), key=lambda u: (-u.gpu_hours_held, u.user_id))
    largest = sorted(rows, key=lambda r: (-r.gpu_hours_held, r.job_id))
    return GpuUsage(since=iso(since), users=ranked[:users], jobs=largest[:limit], jobs_total=len(rows))
