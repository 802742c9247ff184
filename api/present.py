"""Turning views into wire schemas (and blobs into text) for the controllers."""

from __future__ import annotations

from typing import TypedDict

from api.auth import Identity
from api.schemas import (
    AttemptInfo,
    CurrentJob,
    GpuUse,
    JobResults,
    JobStatus,
    NodeInfo,
    QuotaInfo,
    QuotaStatus,
    ScanFinding,
)
from ledger.domain.clock import iso, now_us
from ledger.domain.events import Blob
from ledger.domain.gpu import GpuSummary
from ledger.domain.jobs import JobState
from ledger.domain.quotas import QuotaLimits, figures
from ledger.domain.tokens import may_see
from ledger.store.blobs import BlobStore
from ledger.store.reasons import finish_words
from ledger.store.retention import pruned_message
from projections.plan import JobPlan, Plan, pending_reason
from projections.views import Views


def node_index(views: Views, name: str | None) -> int | None:
    if name is None:
        return None
    for index, node in enumerate(list(views.nodes)):
        if node == name:
            return index
    return None


def job_status(job: JobState, views: Views, plan: Plan) -> JobStatus:
    entry = plan.jobs.get(job.job_id)
    node = job.node or (entry.node if entry else None)
    external = plan.external.get(job.job_id) if job.status == "pending" else None
    start_at = external.start_at if external is not None else (entry.start_at if entry else None)
    queued = entry if job.phase == "queued" else None
    return JobStatus(
        job_id=job.job_id,
        user_id=job.user_id,
        competition_id=job.competition_id,
        project_id=job.project_id,
        status=job.status,
        phase=job.phase,
        reason=pending_reason(job, plan, views),
        node_id=node_index(views, node),
        node=node,
        queue_position=entry.position if entry else None,
        estimated_start_at=iso(start_at) if start_at is not None else None,
        created_at=iso(job.created_at),
        started_at=iso(job.started_at),
        completed_at=iso(job.completed_at),
        exit_code=job.exit_code,
        signal=job.signal,
        expected_time=job.expected_time_s,
        scan_verdict=job.scan_verdict,
        findings=[ScanFinding(rule=f.rule, line=f.line, message=f.message, severity=f.severity) for f in job.findings],
        finish_reason=job.reason,
        finish_reason_text=reason_text(job),
        cancelled_by=job.cancelled_by,
        duration_s=duration_of(job, now_us()),
        has_results=job.results is not None,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        gpu=gpu_use(job.gpu),
        gpu_idle=job.gpu_idle,
        attempts=[
            AttemptInfo(
                attempt=past.attempt,
                node=past.node,
                outcome=past.outcome,
                reason=past.reason,
                started_at=iso(past.started_at),
                ended_at=iso(past.ended_at),
                exit_code=past.exit_code,
            )
            for past in job.history
        ],
        # factors_of, written out: no dict to unpack per job (a dashboard renders a hundred)
        score=round(queued.score, 6) if queued is not None else None,
        fairshare=round(queued.fairshare, 6) if queued is not None else None,
        age=round(queued.age, 6) if queued is not None else None,
        priority=queued.priority if queued is not None else None,
        message=job.message if job.is_terminal else None,
        array_id=job.array_id,
        array_index=job.array_index,
        entrypoint=job.entrypoint,
        resume_from=job.resume_from,
        artifacts=len(job.artifacts),
    )


def reason_text(job: JobState) -> str | None:
    return finish_words(
        job.reason if job.is_terminal else None,
        exit_code=job.exit_code,
        signal=job.signal,
        expected_time_s=job.expected_time_s,
        cancelled_by=job.cancelled_by,
        memory_limit_bytes=job.memory,  # None: its node's share, named in the job's message instead
    )


def duration_of(job: JobState, now: int) -> float | None:
    """Seconds the current attempt ran (until now while it runs); None before it started."""
    if job.started_at is None:
        return None
    end = job.completed_at if job.completed_at is not None else now
    return round(max(0, end - job.started_at) / 1e6, 1)


def quota_status(views: Views, user_id: str, limits: QuotaLimits, now: int, artifact_quota: int = 0) -> QuotaStatus:
    stats = views.users.get(user_id)
    shown = figures(stats.quota if stats is not None else None, limits, now)
    return QuotaStatus(
        user_id=user_id,
        window="day (UTC)",
        quotas=[
            QuotaInfo(quota=f.quota, limit=f.limit, used=f.used, left=f.left, resets_at=iso(f.resets_at_us))
            for f in shown
        ],
        artifact_bytes=stats.artifact_bytes if stats is not None else 0,
        artifact_quota_bytes=artifact_quota,
    )


class Factors(TypedDict):
    """A queued job's score and factors as its row shows them (None: not queued)."""

    score: float | None
    fairshare: float | None
    age: float | None
    priority: int | None


def factors_of(entry: JobPlan | None) -> Factors:
    """A queued job's score and factors, rounded for reading (the order used the exact values)."""
    if entry is None:
        return {"score": None, "fairshare": None, "age": None, "priority": None}
    return {
        "score": round(entry.score, 6),
        "fairshare": round(entry.fairshare, 6),
        "age": round(entry.age, 6),
        "priority": entry.priority,
    }


def blob_text(blobs: BlobStore, blob: Blob | None, limit: int) -> tuple[str, bool]:
    """Inline text of a stored stream, capped; invalid UTF-8 is replaced (full bytes via the logs API)."""
    if blob is None:
        return "", False
    data = blobs.read_range(blob, 0, limit)
    return data.decode("utf-8", errors="replace"), blob.truncated or blob.size > limit


def job_results(job: JobState, blobs: BlobStore, inline_limit: int) -> JobResults:
    if job.pruned_at is not None:
        return pruned_results(job)
    stdout, out_cut = blob_text(blobs, job.stdout, inline_limit)
    stderr, err_cut = blob_text(blobs, job.stderr, inline_limit)
    if job.message and job.reason in (
        "rejected",
        "node_lost",
        "dispatch_failed",
        "lost",
        "sandbox_failed",
        "out_of_memory",
    ):
        # Why gpuledger ended the job belongs with what the job printed (which may be partial).
        stderr = f"{stderr}{'' if not stderr or stderr.endswith(chr(10)) else chr(10)}gpuledger: {job.message}\n"
    elif job.message and job.reason == "cancelled" and not stderr:
        stderr = job.message
    results = None
    if job.results is not None:
        results = (blobs.get(job.results) or b"").decode("utf-8", errors="replace")
    return JobResults(
        job_id=job.job_id,
        status=job.status,
        stdout=stdout,
        stderr=stderr,
        exit_code=job.exit_code,
        results=results,
        started_at=iso(job.started_at),
        completed_at=iso(job.completed_at),
        truncated={"stdout": out_cut, "stderr": err_cut, "results": bool(job.results and job.results.truncated)},
        signal=job.signal,
        reason=job.reason,
        results_file=job.results_file,
        reason_text=reason_text(job),
        message=job.message if job.is_terminal else None,
    )


def node_infos(views: Views, plan: Plan, who: Identity | None, now: int) -> list[NodeInfo]:
    """Anonymous callers see no job or user ids; users see their own; admins see all."""
    infos = []
    for index, node in enumerate(list(views.nodes.values())):
        if node.retired:  # kept in the ledger (and its index kept), no longer part of the fleet
            continue
        running = [views.jobs[j] for j in views.node_jobs.get(node.name, [])]
        status = node.status if node.status != "up" else ("busy" if running else "idle")
        node_plan = plan.nodes.get(node.name)
        current = None
        if running:
            job = running[0]
            visible = may_see(who, job.user_id)
            started = job.started_at
            current = CurrentJob(
                job_id=job.job_id if visible else None,
                user_id=job.user_id if visible else None,
                competition_id=job.competition_id if visible else None,
                started_at=iso(started),
                elapsed_s=round((now - started) / 1e6, 1) if started else None,
                expected_time=job.expected_time_s,
            )
        infos.append(
            NodeInfo(
                node_id=index,
                name=node.name,
                status=status,
                queue_length=node_plan.queue_length if node_plan else 0,
                total_wait_time=node_plan.wait_s if node_plan else 0.0,
                current_job=current,
                slots=node.slots,
                running=len(running),
                down_reason=node.down_reason,
                drain_reason=node.drain_reason if node.drained else None,
            )
        )
    return infos


def pruned_results(job: JobState) -> JobResults:
    """A pruned job's fields with the marker in place of its output (its blobs are gone by design)."""
    return JobResults(
        job_id=job.job_id,
        status=job.status,
        stdout="",
        stderr="",
        exit_code=job.exit_code,
        results=None,
        started_at=iso(job.started_at),
        completed_at=iso(job.completed_at),
        truncated={"stdout": False, "stderr": False, "results": False},
        signal=job.signal,
        reason=job.reason,
        results_file=job.results_file,
        reason_text=reason_text(job),
        pruned_at=iso(job.pruned_at),
        pruned=pruned_message(job),
    )


def gpu_use(summary: GpuSummary | None) -> GpuUse | None:
    """The wire form of an attempt's GPU summary (GPU-seconds as GPU-hours)."""
    if summary is None:
        return None
    return GpuUse(
        gpus=summary.gpus,
        samples=summary.samples,
        mean_util=summary.mean_util,
        peak_util=summary.peak_util,
        peak_mem_mib=summary.peak_mem_mib,
        card_mem_mib=summary.card_mem_mib,
        gpu_hours_held=round(summary.held_gpu_s / 3600, 6),
        gpu_hours_used=round(summary.used_gpu_s / 3600, 6),
    )
