"""Wire schemas: what the HTTP API sends. Field names keep the original system's so its clients work.

These never reuse event classes: the ledger's facts and the API's answers change for different reasons.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from api.diskuse import DiskUse
from projections.dashboard import HealthMetrics, StatusCounts, UserRow
from projections.gpu_usage import GpuUsage


class SubmitAccepted(msgspec.Struct, kw_only=True):
    job_id: str
    node_id: int | None
    status: str
    message: str
    created_at: str | None
    warnings: list[str] = []


class SubmitFinished(msgspec.Struct, kw_only=True):
    job_id: str
    node_id: int | None
    status: str
    stdout: str
    stderr: str
    exit_code: int | None
    results: str | None
    started_at: str | None
    completed_at: str | None
    warnings: list[str] = []
    # The same fields as /api/results, so both answers read alike.
    truncated: dict[str, bool] = {}
    signal: int | None = None
    reason: str | None = None
    results_file: str | None = None
    message: str | None = None  # as JobStatus.message


class SubmitTimedOut(msgspec.Struct, kw_only=True):
    job_id: str
    node_id: int | None
    status: str
    message: str
    warnings: list[str] = []


class AttemptInfo(msgspec.Struct, kw_only=True):
    """An attempt before the current one: retried after it failed, or requeued before it started."""

    attempt: int
    node: str | None
    outcome: str  # "retried" or "requeued"
    reason: str
    started_at: str | None
    ended_at: str | None
    exit_code: int | None = None


class ScanFinding(msgspec.Struct, kw_only=True):
    """One observation of the code scanner about a job's code."""

    rule: str
    line: int
    message: str
    severity: Literal["critical", "warning", "info"]


class GpuUse(msgspec.Struct, kw_only=True):
    """An ended attempt's GPU use (job.gpu_summary): utilisation, memory, GPU-hours held vs used."""

    gpus: int
    samples: int
    mean_util: float  # percent, over every sample of every GPU
    peak_util: float
    peak_mem_mib: int
    card_mem_mib: int
    gpu_hours_held: float
    gpu_hours_used: float  # held time weighted by each GPU's mean utilisation


class JobStatus(msgspec.Struct, kw_only=True):
    job_id: str
    user_id: str
    competition_id: str
    project_id: str
    status: str
    phase: str
    reason: str | None
    node_id: int | None
    node: str | None
    queue_position: int | None
    estimated_start_at: str | None
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    exit_code: int | None
    signal: int | None = None
    expected_time: int = 0
    scan_verdict: str | None = None
    findings: list[ScanFinding] = []
    finish_reason: str | None = None
    finish_reason_text: str | None = None  # the reason in words (ledger/store/reasons.py); the code stays above
    cancelled_by: str | None = None
    duration_s: float | None = None  # run time of the current attempt (so far, while it runs)
    has_results: bool = False  # the job wrote a results file (GET /api/jobs/{job_id}/results-file)
    attempt: int = 0  # the current (or last) attempt; 0 before the first dispatch
    max_attempts: int = 1
    attempts: list[AttemptInfo] = []  # the attempts before the current one
    # The queue's factors for a queued job (docs/user-guide.md, "Why is my job where it is"); None otherwise.
    score: float | None = None
    fairshare: float | None = None
    age: float | None = None
    priority: int | None = None
    # The server's own word on how the job ended (time limit, disk or output limit, cancel): never the
    # job's output, which a job could make look like it (docs/design.md, "Notices about a job").
    message: str | None = None
    gpu: GpuUse | None = None  # the last ended attempt's GPU use; None: no GPU, or no telemetry
    gpu_idle: str | None = None  # the running attempt was found idle: what the policy does (warn/cancel/requeue)
    array_id: str | None = None  # a task of this array (docs/user-guide.md, "Job arrays and sweeps")
    array_index: int | None = None
    entrypoint: str | None = None  # a project's file that runs (None: a single-file job)
    resume_from: str | None = None  # the job whose artifacts were unpacked into this one's workdir
    artifacts: int = 0  # files kept after the job (GET /api/jobs/{job_id}/artifacts)


class ArtifactInfo(msgspec.Struct, kw_only=True):
    path: str  # relative to the job's workdir, e.g. outputs/model.pt
    size: int
    digest: str  # SHA-256 of the bytes, hex


class ArtifactList(msgspec.Struct, kw_only=True):
    """What a job left under outputs/ (and its artifacts: globs), kept after it ended."""

    job_id: str
    artifacts: list[ArtifactInfo] = []
    bytes: int = 0
    skipped: list[str] = []  # left behind, each with why (past ARTIFACT_MAX_BYTES, a link, ...)
    pruned: bool = False  # retention removed them (ARTIFACT_RETENTION); the list says what there was
    message: str | None = None
    resume_from: str | None = None  # the job whose artifacts this one started from


class QuotaInfo(msgspec.Struct, kw_only=True):
    quota: str  # "submissions" or "gpu_hours"
    limit: float  # 0: unlimited
    used: float
    left: float | None  # None: unlimited
    resets_at: str | None


class QuotaStatus(msgspec.Struct, kw_only=True):
    """A user's daily quotas (the day is the UTC day; failures of the platform's making are not counted)."""

    user_id: str
    window: str
    quotas: list[QuotaInfo]
    artifact_bytes: int = 0  # stored, unpruned artifacts of the user's jobs (not per day)
    artifact_quota_bytes: int = 0  # ARTIFACT_QUOTA_BYTES (0: no quota)


class JobResults(msgspec.Struct, kw_only=True):
    job_id: str
    status: str
    stdout: str
    stderr: str
    exit_code: int | None
    results: str | None
    started_at: str | None
    completed_at: str | None
    truncated: dict[str, bool]
    signal: int | None = None
    reason: str | None = None
    results_file: str | None = None
    reason_text: str | None = None  # ``reason`` in words
    message: str | None = None  # as JobStatus.message
    pruned_at: str | None = None  # retention removed the output then (stdout, stderr, results are empty)
    pruned: str | None = None  # "output pruned on <date> (<reason>)"


class CancelAnswer(msgspec.Struct, kw_only=True):
    message: str
    status: str
    job_id: str


class WhoAmI(msgspec.Struct, kw_only=True):
    user_id: str
    is_admin: bool
    token_id: str
    expires_at: str | None  # ISO-8601 UTC


class JobList(msgspec.Struct, kw_only=True, omit_defaults=True):
    jobs: list[JobStatus]
    warnings: list[str] = []  # hints about the query itself (an unknown user_id): absent when none


class CurrentJob(msgspec.Struct, kw_only=True):
    job_id: str | None
    user_id: str | None
    competition_id: str | None
    started_at: str | None
    elapsed_s: float | None
    expected_time: int | None


class NodeInfo(msgspec.Struct, kw_only=True):
    node_id: int
    name: str
    status: str
    queue_length: int
    total_wait_time: float
    current_job: CurrentJob | None
    slots: int = 1
    running: int = 0
    down_reason: str | None = None
    drain_reason: str | None = None  # why an admin drained it (status "draining")


class NodeList(msgspec.Struct, kw_only=True):
    nodes: list[NodeInfo]
    slurm: dict[str, Any] | None = None  # with a [slurm] table: the cluster's partitions and nodes (sinfo)
    sandbox: str = "bwrap"  # JOB_SANDBOX: how jobs are confined on every node
    sandbox_warning: str | None = None  # set when JOB_SANDBOX = "none"


class EventEntry(msgspec.Struct, kw_only=True):
    position: int
    recorded_at: str | None
    type: str
    actor: str
    stream: str
    event: dict[str, Any]


class EventList(msgspec.Struct, kw_only=True):
    job_id: str
    events: list[EventEntry]


class Account(msgspec.Struct, kw_only=True):
    """A user's fair-share account: policy, decayed usage now, and current factor (None: nothing competing)."""

    user_id: str
    share: float
    priority: int
    max_active_jobs: int | None
    max_gpus: int | None
    usage_gpu_hours: float
    fairshare: float | None
    policy_version: int
    set_by: str | None
    reason: str | None


class Accounts(msgspec.Struct, kw_only=True):
    half_life_s: float
    users: dict[str, Account]  # by user id


class QueueRow(msgspec.Struct, kw_only=True):
    """A queued job with its factors; another user's job shows no ids to a user."""

    job_id: str | None
    user_id: str | None
    queue_position: int
    score: float | None
    fairshare: float | None
    age: float | None
    priority: int | None
    reason: str | None
    gpus: int
    waiting_s: float
    node: str | None
    estimated_start_at: str | None


class QueueDocument(msgspec.Struct, kw_only=True):
    """The queued jobs in dispatch order, one page (``GET /api/queue``)."""

    position: int
    at: str | None
    live: bool
    half_life_s: float
    total: int
    offset: int
    limit: int
    queue: list[QueueRow]


class NodeJob(msgspec.Struct, kw_only=True):
    """The job a node runs, as the dashboard's queue information names it."""

    job_id: str | None
    user_id: str | None
    competition_id: str | None
    started_at: str | None


class QueueInformation(msgspec.Struct, kw_only=True):
    node_id: int
    node: str
    queue_size: int
    queue_time_seconds: float
    is_busy: bool
    status: str
    current_job: NodeJob | None


class Dashboard(msgspec.Struct, kw_only=True):
    """The admin dashboard (SPEC §6): bounded, the rest of its lists by page."""

    timestamp: str | None
    position: int
    user_id: str
    is_admin: bool
    job_statistics: StatusCounts
    user_statistics: dict[str, StatusCounts]  # by user id
    user_statistics_total: int  # the rest: /api/dashboard/users?offset=<len(user_statistics)>
    node_statistics: list[NodeInfo]
    queue_information: list[QueueInformation]
    active_jobs: list[JobStatus]
    active_jobs_total: int  # the rest: /api/dashboard/active?offset=<len(active_jobs)>
    recent_jobs: list[JobStatus]
    health_metrics: HealthMetrics
    slurm: dict[str, Any] | None  # live only: the cluster as sinfo shows it
    disk: DiskUse | None  # live only: the latest measurement
    fairshare: Accounts  # the accounts of the users inline
    gpu_usage: GpuUsage | None = None  # the last 24 h: GPU-hours held vs used by user, the 10 largest jobs


class ActivePage(msgspec.Struct, kw_only=True):
    total: int
    offset: int
    limit: int
    jobs: list[JobStatus]


class UsersPage(msgspec.Struct, kw_only=True):
    total: int
    offset: int
    limit: int
    users: list[UserRow]


class NotifyTargets(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A user's default notify targets (``PUT /api/me/notify``): URLs; an empty list clears them."""

    targets: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")]],
        msgspec.Meta(max_length=8, description="webhook or apprise URLs, each allowed by NOTIFY_ALLOWED"),
    ] = msgspec.field(default_factory=list)


class NotifyDefault(msgspec.Struct, kw_only=True):
    """The targets told when a job of the user ends, for jobs whose config names none."""

    user_id: str
    targets: list[str]


class GpuPoint(msgspec.Struct, kw_only=True):
    """One GPU of a job at one moment: utilisation %, memory MiB, power W (None where not reported)."""

    at: str
    attempt: int
    index: int
    util: float
    mem_used_mib: int
    mem_total_mib: int
    power_w: float | None = None


class JobGpu(msgspec.Struct, kw_only=True):
    """A job's GPU samples (the newest ``limit``, oldest first) and its summary."""

    job_id: str
    gpus: int  # GPUs the current attempt holds (0: none, so no telemetry)
    status: str
    gpu_idle: str | None
    summary: GpuUse | None
    points: list[GpuPoint]
    total_points: int  # stored for the job (GPU_SERIES_POINTS at most; older ones are thinned)
