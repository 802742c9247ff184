"""One typed settings object: defaults, then a TOML file, then ``GPULEDGER_*`` environment variables.

A bad value stops start-up with the setting's name. Secrets come from the environment only.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from ledger.errors import SettingsError
from ledger.retries import MAX_RETRIES, RETRYABLE_REASONS
from ledger.shares import Weights


class NodeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One GPU node reached over SSH through the jump host."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    slots: int = 1
    container: str | None = None
    memory: int | str | None = None  # memory for the node's jobs in all, bytes or "64G" (None: JOB_MEMORY_SHARE)

    def __post_init__(self) -> None:
        try:
            memory = None if self.memory is None else parse_bytes(self.memory)
        except ValueError as e:
            raise msgspec.ValidationError(f"{e} - at `$.nodes.memory`") from None
        if memory is not None and memory <= 0:
            raise msgspec.ValidationError("must be positive - at `$.nodes.memory`")

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_bytes(self.memory)


class SlurmSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[slurm]`` table: hand jobs to a Slurm cluster instead of running them on our own nodes."""

    via: Literal["local", "ssh"] = "local"  # where sbatch/squeue/scancel run: this host, or login_host
    login_host: str | None = None
    login_port: int = 22
    login_user: str | None = None
    partition: str | None = None
    sbatch_options: list[str] = []
    python: str = "python3"  # the interpreter the batch script runs the wrapper with, on the compute node
    conf: str | None = None  # SLURM_CONF for sbatch/squeue/sinfo/scancel; None: Slurm's own lookup
    poll_interval_s: float = 1.0
    max_gpus_handed_off: int = 256  # GPUs' worth of jobs in Slurm's queue at once (the rest wait here)

    def __post_init__(self) -> None:
        if self.via == "ssh" and not self.login_host:
            raise msgspec.ValidationError("via = 'ssh' needs login_host - at `$.slurm.login_host`")
        if self.poll_interval_s <= 0 or self.max_gpus_handed_off < 1:
            raise msgspec.ValidationError("must be positive - at `$.slurm`")


class ReplicaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[replica]`` table: Litestream streams the ledger's WAL to ``url``, and the blobs follow."""

    url: str  # file:///path, sftp://user@host:port/path or s3://bucket/path
    sync_interval_s: float = 0.25  # Litestream's sync-interval: the bulk of the lag
    blob_interval_s: float = 0.25  # how often new blobs are copied to the target
    lag_s: float = 1.0  # REPLICA_LAG_S: the promise /readyz checks the measured lag against
    key_file: str | None = None  # sftp: the private key (default: SSH_KEY_FILE)
    known_hosts: str | None = None  # sftp: the target's host key (default: SSH_KNOWN_HOSTS)

    def __post_init__(self) -> None:
        if not self.url.startswith(("file:///", "sftp://", "s3://")):
            raise msgspec.ValidationError("must start with file:///, sftp:// or s3:// - at `$.replica.url`")
        if min(self.sync_interval_s, self.blob_interval_s, self.lag_s) <= 0:
            raise msgspec.ValidationError("must be positive - at `$.replica`")


EDGE_COUNTS = ("max_connections", "max_connections_per_address", "auth_failure_limit")
EDGE_SPANS = ("http_header_timeout_s", "auth_failure_window_s")
OUTPUT_LIMIT_FACTOR = 2  # see Settings.running_output_cap
DEFAULT_ENDPOINT_LIMITS = {"submit": 5, "status": 60, "results": 60, "cancel": 10, "jobs": 30}


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of the server; names follow SPEC §8 in lower case."""

    # network and storage
    server_host: str = "0.0.0.0"  # noqa: S104 - the server is meant to be reachable by researchers
    server_port: int = 8001
    database_path: str = "./gpuledger.db"
    jobs_dir: str = "./jobs"
    log_file: str = "./server.log"
    # nodes
    nodes: list[NodeSpec] = []
    gpu_node_prefix: str = "gpu-node"
    gpu_node_count: int = 0
    gpu_node_port: int = 22
    gpu_user: str = "gpuuser"
    jump_host: str | None = None
    jump_port: int = 22
    jump_user: str = "root"
    ssh_key_file: str | None = None
    ssh_known_hosts: str | None = None
    ssh_keepalive_s: float = 15.0
    ssh_connect_timeout_s: float = 10.0
    remote_root: str = "/tmp/gpuledger"  # noqa: S108 - on the GPU node, per-job private dirs below it
    job_command: str = "python3 {solution}"
    local_slots: int = 0
    local_gpus: int | None = None  # GPUs of the local node (None: as nvidia-smi lists them; 0: CPU-only slots)
    node_lost_after: float = 600.0
    node_down_after_failures: int = 3
    node_probe_interval_s: float = 5.0
    cancel_grace_s: float = 5.0
    max_output_bytes: int = 64 * 1024 * 1024
    max_results_bytes: int = 16 * 1024 * 1024
    inline_output_bytes: int = 1024 * 1024
    # the ledger's own disk (docs/admin-guide.md, "When the disk fills")
    ledger_reserve_bytes: int = 64 * 1024 * 1024  # preallocated beside the ledger, given back on a full disk
    # no job is dispatched below this much free on the ledger's disk; None: ``ledger.disk.auto_floor``
    disk_free_floor_bytes: int | None = None
    # LXC
    lxc_restart_between_jobs: bool = False
    lxc_container_prefix: str = "gpu-node"
    lxc_restart_command: str = "lxc restart {container}"
    lxc_restart_wait_time: float = 30.0
    # jobs and limits
    sync_wait_timeout: float = 14400.0
    max_expected_time: int = 7 * 24 * 3600
    max_job_timeout_multiplier: float = 2.0
    max_code_bytes: int = 5 * 1024 * 1024
    max_config_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 5
    max_active_jobs_per_user: int = 1
    endpoint_limits: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_ENDPOINT_LIMITS))
    trusted_proxies: list[str] = []
    admin_rate_limit_exempt: bool = True
    token_max_days: int = 30
    retention_days: int = 0  # outputs of jobs ended this many days ago are pruned; 0: kept for ever
    # code scanner
    code_scanner_enabled: bool = True
    code_scanner_quick_mode: bool = True
    code_scanner_base_url: str = "https://openrouter.ai/api/v1"
    code_scanner_model: str = "openai/gpt-4o-mini"
    code_scanner_fail_open: bool = True
    code_scanner_timeout_s: float = 60.0
    openrouter_api_key: str | None = None
    # job sandbox: how submitted code is confined on every node (docs/admin-guide.md, "Sandbox")
    job_sandbox: Literal["bwrap", "none"] = "bwrap"
    job_network: Literal["none", "host"] = "none"
    job_env: dict[str, str] = {}
    job_readonly_paths: list[str] = []
    job_uid_base: int = 61000
    job_max_processes: int = 4096
    job_max_open_files: int = 65536
    job_max_memory_bytes: int = 0
    job_gpu_device_dir: str = "/dev"  # where nodes keep /dev/nvidia<minor> (tests point it at fake nodes)
    # resource limits: every job in its own cgroup (docs/admin-guide.md, "Resource limits")
    job_cgroups: bool = True
    job_cgroup_parent: str = "gpuledger"
    job_memory_share: float = 0.8  # of a node's RAM for its jobs in all; a job gets its slots' part
    job_tmpfs_share: float = 0.5  # /tmp and /dev/shm each sized at this share of the job's memory limit
    job_cpu_weight: int = 100  # cpu.weight of each job (v2 scale; cpu.shares = 10.24 x on v1)
    job_cpu_quota: float = 0.0  # CPUs per slot a job may use at most; 0: no quota (weights only)
    # Slurm executor (a [slurm] table replaces the local runner and SSH nodes)
    slurm: SlurmSettings | None = None
    # continuous replication (docs/admin-guide.md, "Replication"): Litestream and the blobs to one target
    replica: ReplicaSettings | None = None
    # reads at scale: the bounded dashboard and as-of snapshots
    dashboard_active_jobs: int = 100
    snapshot_every: int = 10_000
    # finished jobs out of memory: how many recently finished jobs stay in memory (older ones are read from disk)
    finished_jobs_cached: int = 10_000
    # reads at scale: users inline in the dashboard document
    dashboard_users: int = 100
    # HTTP edge: body deadline, idle keep-alive, SSE heartbeats
    request_body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5
    sse_heartbeat_s: float = 15.0
    # connections and guessing (docs/admin-guide.md, "Connections and guessing"); 0 is unlimited
    http_header_timeout_s: float = 10.0  # a connection's request head must arrive whole within this
    max_connections: int = 0  # 0: derived from RLIMIT_NOFILE (and never above what it allows)
    max_connections_per_address: int = 128
    auth_failure_limit: int = 20  # failed authentications per address per window, then 429
    auth_failure_window_s: float = 300.0
    # quotas and retries (docs/admin-guide.md, "Quotas and retries"): 0 is unlimited / no retries
    quota_submissions: int = 0  # submissions per user per UTC day
    quota_gpu_hours: float = 0.0  # GPU-hours per user per UTC day (checked at submit)
    retries: int = 0  # retries of a job whose config says nothing (at most 5)
    retry_on: list[str] = msgspec.field(default_factory=lambda: ["node_lost", "dispatch_failed"])
    # fair share: the queue's score and the usage decay (docs/design.md, "Fair share")
    fairshare_half_life: float | str = 7 * 86_400.0  # seconds, or text with a unit: "7d", "36h", "90m"
    fairshare_weight: float = 1.0
    fairshare_age_weight: float = 0.25
    fairshare_age_max: float = 86_400.0  # seconds of waiting that earn the whole age factor
    fairshare_priority_weight: float = 1.0
    # job output and disk (docs/admin-guide.md, "Job output and disk limits"); 0 is no limit
    job_max_disk: int = 10 * 1024**3  # bytes of workdir and output on disk per job
    download_concurrency: int = 4  # full-output downloads streaming at once (the rest get 503)
    download_bytes_per_minute: int = 1024**3  # full-output bytes one token may download per minute

    @property
    def running_output_cap(self) -> int:
        """Bytes per output file a running job may write before the wrapper stops it (``output_limit``):
        OUTPUT_LIMIT_FACTOR times what is kept, so a job is stopped only well past the point of truncation."""
        return OUTPUT_LIMIT_FACTOR * self.max_output_bytes

    @property
    def half_life_s(self) -> float:
        """FAIRSHARE_HALF_LIFE in seconds (checked at start-up)."""
        return parse_duration(self.fairshare_half_life)

    def fairshare_weights(self) -> Weights:
        return Weights(
            fairshare=self.fairshare_weight,
            age=self.fairshare_age_weight,
            priority=self.fairshare_priority_weight,
            age_max_s=self.fairshare_age_max,
        )

    def __post_init__(self) -> None:
        positive = ("server_port", "max_code_bytes", "max_config_bytes", "max_expected_time")
        for name in positive:
            if getattr(self, name) <= 0:
                raise msgspec.ValidationError(f"must be positive - at `$.{name}`")
        if self.max_job_timeout_multiplier <= 0:
            raise msgspec.ValidationError("must be positive - at `$.max_job_timeout_multiplier`")
        # Limits: 0 means unlimited; no upper cap (the views keep only the last minute's submit times).
        for name in ("rate_limit_per_minute", "max_active_jobs_per_user", *EDGE_COUNTS):
            if getattr(self, name) < 0:
                raise msgspec.ValidationError(f"must be 0 (unlimited) or more - at `$.{name}`")
        if any(value < 0 for value in self.endpoint_limits.values()):
            raise msgspec.ValidationError("must be 0 (unlimited) or more - at `$.endpoint_limits`")
        for name in ("ledger_reserve_bytes", "disk_free_floor_bytes"):
            if (getattr(self, name) or 0) < 0:
                raise msgspec.ValidationError(f"must be 0 (none) or more - at `$.{name}`")
        for name in ("dashboard_active_jobs", "snapshot_every", "finished_jobs_cached", "dashboard_users"):
            if getattr(self, name) < 1:
                raise msgspec.ValidationError(f"must be at least 1 - at `$.{name}`")
        self._check_sandbox()
        self._check_job_files()
        self._check_quotas()
        self._check_fairshare()

    def _check_job_files(self) -> None:
        for name in ("job_max_disk", "download_bytes_per_minute", "max_output_bytes"):
            if getattr(self, name) < 0:
                raise msgspec.ValidationError(f"must be 0 (no limit) or more - at `$.{name}`")
        if self.download_concurrency < 1:
            raise msgspec.ValidationError("must be at least 1 - at `$.download_concurrency`")

    def _check_quotas(self) -> None:
        for name in ("quota_submissions", "quota_gpu_hours", "retention_days"):
            if getattr(self, name) < 0:
                raise msgspec.ValidationError(f"must be 0 (unlimited) or more - at `$.{name}`")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise msgspec.ValidationError(f"must be between 0 and {MAX_RETRIES} - at `$.retries`")
        unknown = sorted(set(self.retry_on) - RETRYABLE_REASONS)
        if unknown:
            raise msgspec.ValidationError(
                f"{', '.join(unknown)} cannot be retried (choose from {', '.join(sorted(RETRYABLE_REASONS))})"
                " - at `$.retry_on`"
            )

    def _check_fairshare(self) -> None:
        try:
            half_life = parse_duration(self.fairshare_half_life)
        except ValueError as e:
            raise msgspec.ValidationError(f"{e} - at `$.fairshare_half_life`") from None
        if half_life <= 0:
            raise msgspec.ValidationError("must be positive - at `$.fairshare_half_life`")
        for name in ("fairshare_weight", "fairshare_age_weight", "fairshare_age_max", "fairshare_priority_weight"):
            if getattr(self, name) < 0:
                raise msgspec.ValidationError(f"must not be negative - at `$.{name}`")

    def _check_sandbox(self) -> None:
        if not 1000 <= self.job_uid_base <= 2**31 - 1024:  # never a system account, never root
            raise msgspec.ValidationError("must be between 1000 and 2147482624 - at `$.job_uid_base`")
        for name in ("job_max_processes", "job_max_open_files", "job_max_memory_bytes"):
            if getattr(self, name) < 0:
                raise msgspec.ValidationError(f"must not be negative - at `$.{name}`")
        self._check_resources()
        for path in self.job_readonly_paths:
            if not path.startswith("/"):
                raise msgspec.ValidationError(f"{path!r} is not an absolute path - at `$.job_readonly_paths`")
        for name in ("request_body_timeout_s", "keep_alive_timeout_s", "sse_heartbeat_s", *EDGE_SPANS):
            if getattr(self, name) <= 0:
                raise msgspec.ValidationError(f"must be positive - at `$.{name}`")

    def _check_resources(self) -> None:
        for name in ("job_memory_share", "job_tmpfs_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise msgspec.ValidationError(f"must be between 0 and 1 - at `$.{name}`")
        if not 1 <= self.job_cpu_weight <= 10_000:
            raise msgspec.ValidationError("must be between 1 and 10000 - at `$.job_cpu_weight`")
        if self.job_cpu_quota < 0:
            raise msgspec.ValidationError("must not be negative - at `$.job_cpu_quota`")
        parts = self.job_cgroup_parent.strip("/").split("/")
        if not all(parts) or any(p in (".", "..") for p in parts):
            raise msgspec.ValidationError(
                "must be a path like gpuledger or a/b (no . or ..) - at `$.job_cgroup_parent`"
            )

    def node_specs(self) -> list[NodeSpec]:
        """Explicit ``[[nodes]]`` win; otherwise ``GPU_NODE_PREFIX``-0 … -(COUNT-1)."""
        if self.nodes:
            return list(self.nodes)
        return [
            NodeSpec(
                name=f"{self.gpu_node_prefix}-{i}",
                host=f"{self.gpu_node_prefix}-{i}",
                port=self.gpu_node_port,
                user=self.gpu_user,
            )
            for i in range(self.gpu_node_count)
        ]

    def redacted(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        for secret in SECRET_SETTINGS:
            if data.get(secret):
                data[secret] = "***"
        return data


_BYTE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: int | str) -> int:
    """Bytes from a number of bytes or a text like ``512M``, ``8G``, ``1.5G``, ``8GiB`` (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (text[:-1], text[-1]) if text[-1:] in _BYTE_UNITS else (text, "")
    try:
        amount = float(number) * _BYTE_UNITS.get(unit, 1)
    except ValueError:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with K, M, G or T)") from None
    if amount != amount or amount in (float("inf"), float("-inf")) or amount > 1 << 62:
        raise ValueError(f"{value!r} is not a finite size")
    return int(amount)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 7 * 86_400.0}


def parse_duration(value: float | str) -> float:
    """Seconds from a number of seconds or a text like ``7d``, ``36h``, ``90m``, ``45s``, ``2w``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (seconds, or a number with s, m, h, d or w)") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


SECRET_SETTINGS = ("openrouter_api_key",)
ENV_PREFIX = "GPULEDGER_"
# GPULEDGER_* variables that are not server settings: the researcher client's (URL, TOKEN, USER) and
# the test suite's switches that turn a missing sshd, browser, sandbox or Slurm into a failure. Any other
# unknown name is a typo.
NOT_SETTINGS = frozenset(
    {
        "GPULEDGER_URL",
        "GPULEDGER_TOKEN",
        "GPULEDGER_USER",
        "GPULEDGER_REQUIRE_SSHD",
        "GPULEDGER_REQUIRE_BROWSER",
        "GPULEDGER_REQUIRE_SANDBOX",
        "GPULEDGER_REQUIRE_SLURM",
    }
)
# Secrets are read from these plain names too (as the original system did), never from a file.
SECRET_ENV_NAMES = {"openrouter_api_key": "OPENROUTER_API_KEY"}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    raw: dict[str, Any] = {}
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            raise SettingsError(f"{key}: unknown setting {name!r}")
        raw[name] = _parse_env_value(key, text, fields[name].type)
    for name, env_name in SECRET_ENV_NAMES.items():
        if env_name in environ and name not in raw:
            raw[name] = environ[env_name]
    return raw


_KIND = {int: "an integer", float: "a number", bool: "true or false"}


def _parse_env_value(key: str, text: str, annotation: Any) -> Any:
    if annotation is str or annotation == (str | None):
        return text
    try:
        # Numbers, booleans, lists and tables are written as JSON (or TOML-ish true/false).
        return msgspec.json.decode(text.strip().lower() if text.strip().lower() in ("true", "false") else text)
    except msgspec.DecodeError:
        if isinstance(text, str) and annotation not in (int, float, bool):
            return text
        raise SettingsError(f"{key} must be {_KIND.get(annotation, 'JSON')}, not {text!r}") from None


def load_settings(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (explicit, or ./gpuledger.toml if present), then the environment."""
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    path = Path(config_file) if config_file else Path("gpuledger.toml")
    if config_file and not path.exists():
        raise SettingsError(f"config file not found: {path}")
    if path.exists():
        try:
            raw.update({k.lower(): v for k, v in tomllib.loads(path.read_text()).items()})
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{path}: invalid TOML: {e}") from e
        for secret in SECRET_SETTINGS:
            if secret in raw:
                raise SettingsError(f"{secret}: secrets come from the environment only, not {path}")
    raw.update(_from_env(environ))
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as e:
        raise SettingsError(f"invalid setting: {_name_setting(str(e))}") from e


def setting_sources(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Where each setting's value comes from, as ``load_settings`` reads them: "default", "file" or "env"."""
    environ = dict(os.environ if environ is None else environ)
    sources = dict.fromkeys((f.name for f in msgspec.structs.fields(Settings)), "default")
    path = Path(config_file) if config_file else Path("gpuledger.toml")
    if path.exists():
        sources.update(dict.fromkeys((k.lower() for k in tomllib.loads(path.read_text())), "file"))
    sources.update(dict.fromkeys(_from_env(environ), "env"))
    return sources


def _name_setting(message: str) -> str:
    """msgspec says ``... - at `$.server_port` ``; lead with the setting's name."""
    if "`$." in message:
        where = message.split("`$.", 1)[1].rstrip("`")
        return f"{where.split('.')[0].split('[')[0]}: {message}"
    return message
