"""What the server answers, as typed structs (unknown fields are ignored, so newer servers still decode)."""

from __future__ import annotations

from typing import Any

import msgspec

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class AttemptInfo(msgspec.Struct, kw_only=True):
    attempt: int
    outcome: str  # "retried" or "requeued"
    reason: str
    node: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None


class GpuUse(msgspec.Struct, kw_only=True):
    """An ended attempt's GPU use: utilisation %, memory MiB, GPU-hours held vs used."""

    gpus: int = 0
    samples: int = 0
    mean_util: float = 0.0
    peak_util: float = 0.0
    peak_mem_mib: int = 0
    card_mem_mib: int = 0
    gpu_hours_held: float = 0.0
    gpu_hours_used: float = 0.0


class JobStatus(msgspec.Struct, kw_only=True):
    job_id: str
    status: str
    user_id: str = ""
    competition_id: str = ""
    project_id: str = ""
    phase: str = ""
    reason: str | None = None
    node_id: int | None = None
    node: str | None = None
    queue_position: int | None = None
    estimated_start_at: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    expected_time: int = 0
    scan_verdict: str | None = None
    findings: list[dict[str, Any]] = []
    finish_reason: str | None = None
    finish_reason_text: str | None = None
    cancelled_by: str | None = None
    duration_s: float | None = None
    has_results: bool = False
    attempt: int = 0
    max_attempts: int = 1
    attempts: list[AttemptInfo] = []
    score: float | None = None  # a queued job's fair-share score and its factors
    fairshare: float | None = None
    age: float | None = None
    priority: int | None = None
    message: str | None = None  # the server's word on how the job ended (never the job's output)
    gpu: GpuUse | None = None  # the last ended attempt's GPU use (None: no GPU or no telemetry)
    gpu_idle: str | None = None  # the running attempt was found idle: warn, cancel or requeue
    array_id: str | None = None  # a task of this array
    array_index: int | None = None
    entrypoint: str | None = None  # a project's file that runs (None: a single-file job)
    resume_from: str | None = None  # the job whose artifacts this one started from
    artifacts: int = 0  # files kept after the job (``artifacts()`` lists them)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class ArtifactInfo(msgspec.Struct, kw_only=True):
    path: str  # relative to the job's workdir, e.g. outputs/model.pt
    size: int
    digest: str  # SHA-256, hex: ``download`` checks it


class ArtifactList(msgspec.Struct, kw_only=True):
    job_id: str
    artifacts: list[ArtifactInfo] = []
    bytes: int = 0
    skipped: list[str] = []
    pruned: bool = False  # retention removed them: the list says what there was
    message: str | None = None
    resume_from: str | None = None


class WhoAmI(msgspec.Struct, kw_only=True):
    user_id: str
    is_admin: bool = False
    token_id: str = ""
    expires_at: str | None = None


class QuotaInfo(msgspec.Struct, kw_only=True):
    quota: str
    limit: float = 0.0
    used: float = 0.0
    left: float | None = None
    resets_at: str | None = None


class QuotaStatus(msgspec.Struct, kw_only=True):
    user_id: str
    window: str = "day (UTC)"
    quotas: list[QuotaInfo] = []
    artifact_bytes: int = 0
    artifact_quota_bytes: int = 0  # 0: no quota


class GpuPoint(msgspec.Struct, kw_only=True):
    at: str
    index: int
    util: float
    mem_used_mib: int
    mem_total_mib: int
    attempt: int = 1
    power_w: float | None = None


class JobGpu(msgspec.Struct, kw_only=True):
    """A job's GPU samples (the newest, oldest first) and its summary."""

    job_id: str
    gpus: int = 0
    status: str = ""
    gpu_idle: str | None = None
    summary: GpuUse | None = None
    points: list[GpuPoint] = []
    total_points: int = 0


class GpuUserUsage(msgspec.Struct, kw_only=True):
    user_id: str
    jobs: int = 0
    gpu_jobs: int = 0
    gpu_hours_held: float = 0.0
    gpu_hours_used: float = 0.0  # of the jobs with telemetry, weighted by utilisation
    gpu_hours_unmeasured: float = 0.0  # held by jobs without telemetry


class GpuJobUsage(msgspec.Struct, kw_only=True):
    job_id: str
    user_id: str = ""
    status: str = ""
    gpus: int = 0
    gpu_hours_held: float = 0.0
    gpu_hours_used: float | None = None  # None: no telemetry
    mean_util: float | None = None
    peak_mem_mib: int | None = None
    card_mem_mib: int | None = None


class GpuUsage(msgspec.Struct, kw_only=True):
    """GPU-hours held vs used of the jobs that ended since ``since``: by user, and the largest jobs."""

    since: str | None = None
    users: list[GpuUserUsage] = []
    jobs: list[GpuJobUsage] = []
    jobs_total: int = 0


class JobResults(msgspec.Struct, kw_only=True):
    job_id: str
    status: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    results: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    truncated: dict[str, bool] = {}
    signal: int | None = None
    reason: str | None = None
    results_file: str | None = None
    reason_text: str | None = None
    message: str | None = None  # as JobStatus.message
    pruned_at: str | None = None  # retention removed the output then: stdout, stderr and results are empty
    pruned: str | None = None  # "output pruned on <date> (<reason>)"


class Submitted(msgspec.Struct, kw_only=True):
    job_id: str
    status: str
    node_id: int | None = None
    message: str = ""
    created_at: str | None = None
    warnings: list[str] = []


class ArraySubmitted(msgspec.Struct, kw_only=True):
    array_id: str
    tasks: int
    width: int  # at most this many tasks queued or running at once
    message: str = ""
    warnings: list[str] = []


class ArrayTask(msgspec.Struct, kw_only=True):
    job_id: str
    index: int
    status: str
    phase: str = ""
    reason: str | None = None
    exit_code: int | None = None
    params: dict[str, Any] | None = None


class ArrayStatus(msgspec.Struct, kw_only=True):
    array_id: str
    tasks: int
    counts: dict[str, int]  # tasks by status
    done: bool
    user_id: str = ""
    width: int = 0
    task_list: list[ArrayTask] = []


class BulkCancel(msgspec.Struct, kw_only=True):
    cancelled: int  # jobs whose cancel this request recorded
    job_ids: list[str] = []
    message: str = ""


class CurrentJob(msgspec.Struct, kw_only=True):
    job_id: str | None = None
    user_id: str | None = None
    competition_id: str | None = None
    started_at: str | None = None
    elapsed_s: float | None = None
    expected_time: int | None = None


class NodeInfo(msgspec.Struct, kw_only=True):
    node_id: int
    name: str
    status: str
    queue_length: int = 0
    total_wait_time: float = 0.0
    current_job: CurrentJob | None = None
    slots: int = 1
    running: int = 0
    down_reason: str | None = None
    drain_reason: str | None = None


class LogChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Text of one stream from byte ``offset - len(text.encode())`` up to byte ``offset`` of attempt
    ``attempt``'s output (a retried job's next attempt starts again at byte 0)."""

    stream: str
    offset: int
    text: str
    attempt: int = 1
    pruned: str | None = None  # "output pruned on <date> (<reason>)": retention removed this output


class LedgerEvent(msgspec.Struct, kw_only=True):
    position: int
    stream: str
    type: str = ""
    recorded_at: str | None = None
    actor: str = ""
    event: dict[str, Any] = {}

    @property
    def job_id(self) -> str | None:
        return self.stream.removeprefix("job-") if self.stream.startswith("job-") else None


def to_builtins(value: Any) -> Any:
    """Plain dicts and lists (for ``--json`` output)."""
    return msgspec.to_builtins(value)
