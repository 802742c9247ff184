"""The settings groups the server's front reads: the HTTP edge, its files, reads at scale, the queue's
admission rules, fair share and the code scanner. Each constraint is a ``msgspec.Meta``, checked as
the settings are read."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ledger.domain.retries import MAX_RETRIES, RETRYABLE_REASONS
from ledger.domain.shares import Weights
from ledger.store.settings.units import parse_duration

DEFAULT_ENDPOINT_LIMITS = {"submit": 5, "status": 60, "results": 60, "cancel": 10, "jobs": 30}
Unlimited0 = Annotated[int, Meta(ge=0)]  # a count where 0 means unlimited


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``api.app``, ``api.connections``, ``api.edge`` and ``cli.serve``: the HTTP edge."""

    host: Annotated[str, Meta(description="address to listen on")] = "0.0.0.0"  # noqa: S104 - meant to be reached
    port: Annotated[int, Meta(gt=0, description="port to listen on")] = 8001
    request_body_timeout_s: Annotated[float, Meta(gt=0, description="a body must arrive within this")] = 30.0
    keep_alive_timeout_s: Annotated[int, Meta(gt=0, description="idle keep-alive connections close after")] = 5
    sse_heartbeat_s: Annotated[float, Meta(gt=0, description="seconds between event-stream heartbeats")] = 15.0
    header_timeout_s: Annotated[float, Meta(gt=0, description="a request head must arrive whole within this")] = 10.0
    # 0: derived from RLIMIT_NOFILE (and never above what it allows)
    max_connections: Annotated[int, Meta(ge=0, description="open connections at once (0: from RLIMIT_NOFILE)")] = 0
    max_connections_per_address: Annotated[int, Meta(ge=0, description="per client address (0: unlimited)")] = 128
    auth_failure_limit: Annotated[int, Meta(ge=0, description="failed authentications per window (0: off)")] = 20
    auth_failure_window_s: Annotated[float, Meta(gt=0, description="window of the failure limit")] = 300.0
    trusted_proxies: Annotated[list[str], Meta(description="proxies whose X-Forwarded-For is believed")] = []
    endpoint_limits: Annotated[
        dict[str, Unlimited0], Meta(description="requests per minute per endpoint (0: unlimited)")
    ] = msgspec.field(default_factory=lambda: dict(DEFAULT_ENDPOINT_LIMITS))
    download_concurrency: Annotated[int, Meta(ge=1, description="full-output downloads at once")] = 4
    download_bytes_per_minute: Annotated[int, Meta(ge=0, description="per token (0: no limit)")] = 1024**3
    token_max_days: Annotated[int, Meta(description="longest token validity")] = 30


class StorageSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``api.runtime`` and the admin commands: where the ledger, blobs and log live."""

    database_path: Annotated[str, Meta(description="the ledger file (SQLite, WAL)")] = "./gpuledger.db"
    jobs_dir: Annotated[str, Meta(description="blobs, results copies, live output, local workdirs")] = "./jobs"
    log_file: Annotated[str, Meta(description="JSON log lines")] = "./server.log"
    # preallocated beside the ledger, given back on a full disk (docs/admin-guide.md, "When the disk fills")
    ledger_reserve_bytes: Annotated[int, Meta(ge=0, description="reserve file beside the ledger (0: none)")] = (
        64 * 1024 * 1024
    )
    # no job is dispatched below this much free on the ledger's disk; None: ``ledger.store.disk.auto_floor``
    disk_free_floor_bytes: Annotated[int, Meta(ge=0, description="no dispatch below this free (0: none)")] | None = None
    retention_days: Annotated[int, Meta(ge=0, description="outputs pruned this many days after (0: kept)")] = 0
    # seconds, or text with a unit ("30d"); 0: artifacts are kept (checked in __post_init__, as no Meta reads units)
    artifact_retention: Annotated[float | str, Meta(description="artifacts pruned this long after (0: kept)")] = 0.0

    def __post_init__(self) -> None:
        try:
            retention = parse_duration(self.artifact_retention)
        except ValueError as e:
            raise msgspec.ValidationError(f"{e} - at `$.storage.artifact_retention`") from None
        if retention < 0:
            raise msgspec.ValidationError("must not be negative - at `$.storage.artifact_retention`")

    @property
    def artifact_retention_s(self) -> float:
        """ARTIFACT_RETENTION in seconds (0: artifacts are kept)."""
        return parse_duration(self.artifact_retention)


class ReadsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by the dashboard controllers and the projections' owner: how much is held and shown."""

    dashboard_active_jobs: Annotated[int, Meta(ge=1, description="active jobs inline in the dashboard")] = 100
    dashboard_users: Annotated[int, Meta(ge=1, description="users inline in the dashboard")] = 100
    snapshot_every: Annotated[int, Meta(ge=1, description="events between snapshots of the views")] = 10_000
    finished_jobs_cached: Annotated[int, Meta(ge=1, description="recently finished jobs kept in memory")] = 10_000
    # Each child holds its last two replays (about the memory of the live views each) and one core while busy.
    asof_workers: Annotated[int, Meta(ge=1, le=16, description="processes that replay as-of documents")] = 2


class QueueSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``api.submit`` and the jobs controller: what a submission may ask and how often."""

    sync_wait_timeout: Annotated[float, Meta(description="how long wait=true submits wait")] = 14400.0
    max_expected_time: Annotated[int, Meta(gt=0, description="largest expected_time accepted")] = 7 * 24 * 3600
    max_code_bytes: Annotated[int, Meta(gt=0, description="largest solution")] = 5 * 1024 * 1024
    max_config_bytes: Annotated[int, Meta(gt=0, description="largest config")] = 64 * 1024
    project_max_bytes: Annotated[int, Meta(gt=0, description="largest project archive")] = 64 * 1024 * 1024
    # Limits: 0 means unlimited; no upper cap (the views keep only the last minute's submit times).
    rate_limit_per_minute: Annotated[int, Meta(ge=0, description="submissions per user per minute")] = 5
    max_active_jobs_per_user: Annotated[int, Meta(ge=0, description="pending or running jobs per user")] = 1
    admin_rate_limit_exempt: Annotated[bool, Meta(description="admins skip the per-user limits")] = True
    quota_submissions: Annotated[int, Meta(ge=0, description="submissions per user per UTC day")] = 0
    # Slurm's MaxArraySize default is 1001; each task is a job row and a few events written at once.
    array_max_tasks: Annotated[int, Meta(ge=1, le=100_000, description="tasks in one array or sweep")] = 1000
    quota_gpu_hours: Annotated[float, Meta(ge=0, description="GPU-hours per user per UTC day")] = 0.0
    retries: Annotated[int, Meta(ge=0, le=MAX_RETRIES, description="retries of a job whose config has none")] = 0
    retry_on: Annotated[list[str], Meta(description="finish reasons that are retried")] = msgspec.field(
        default_factory=lambda: ["node_lost", "dispatch_failed"]
    )

    def __post_init__(self) -> None:
        # The retryable reasons are a set kept in ``ledger.domain.retries``; a Literal would copy it.
        unknown = sorted(set(self.retry_on) - RETRYABLE_REASONS)
        if unknown:
            raise msgspec.ValidationError(
                f"{', '.join(unknown)} cannot be retried (choose from {', '.join(sorted(RETRYABLE_REASONS))})"
                " - at `$.queue.retry_on`"
            )


Weight = Annotated[float, Meta(ge=0, description="a weight of the queue score")]


class FairshareSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by the runtime's planner and dispatcher: the queue's score and the usage decay."""

    # seconds, or text with a unit: "7d", "36h", "90m" (parsed in __post_init__: no Meta reads units)
    half_life: Annotated[float | str, Meta(description="half-life of the usage decay")] = 7 * 86_400.0
    weight: Weight = 1.0
    age_weight: Weight = 0.25
    age_max: Annotated[float, Meta(ge=0, description="seconds of waiting that earn the whole age factor")] = 86_400.0
    priority_weight: Weight = 1.0

    def __post_init__(self) -> None:
        try:
            half_life = parse_duration(self.half_life)
        except ValueError as e:
            raise msgspec.ValidationError(f"{e} - at `$.fairshare.half_life`") from None
        if half_life <= 0:
            raise msgspec.ValidationError("must be positive - at `$.fairshare.half_life`")

    @property
    def half_life_s(self) -> float:
        """FAIRSHARE_HALF_LIFE in seconds (checked at start-up)."""
        return parse_duration(self.half_life)

    def weights(self) -> Weights:
        return Weights(
            fairshare=self.weight, age=self.age_weight, priority=self.priority_weight, age_max_s=self.age_max
        )


class ScannerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.scan`` and ``api.submit``: the static scan and the LLM review."""

    enabled: Annotated[bool, Meta(description="static scan of every submission")] = True
    quick_mode: Annotated[bool, Meta(description="static scan only (false: also an LLM review)")] = True
    base_url: Annotated[str, Meta(description="OpenAI-compatible endpoint")] = "https://openrouter.ai/api/v1"
    model: Annotated[str, Meta(description="model for the review")] = "openai/gpt-4o-mini"
    fail_open: Annotated[bool, Meta(description="an unreachable LLM accepts with a warning")] = True
    timeout_s: Annotated[float, Meta(description="timeout of one review request")] = 60.0
    openrouter_api_key: Annotated[str | None, Meta(description="the LLM key (environment only)")] = None
