"""One typed settings object, made of one group per reader, and the one table that maps the flat
``GPULEDGER_*`` / TOML names users write onto the groups' fields."""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.store.settings.environments import EnvSettings
from ledger.store.settings.gpu import GpuSettings
from ledger.store.settings.notifying import NotifySettings
from ledger.store.settings.running import LxcSettings, RunnerSettings, SandboxSettings, SshSettings
from ledger.store.settings.serving import (
    FairshareSettings,
    HttpSettings,
    QueueSettings,
    ReadsSettings,
    ScannerSettings,
    StorageSettings,
)
from ledger.store.settings.tables import ReplicaSettings, SlurmSettings

# The flat name (TOML key, GPULEDGER_ + its upper case, SPEC §8) of every grouped field: "group.field".
# Users' files and environments keep the flat names; the code reads ``settings.<group>.<field>``.
FLAT: dict[str, str] = {
    "server_host": "http.host",
    "server_port": "http.port",
    "request_body_timeout_s": "http.request_body_timeout_s",
    "keep_alive_timeout_s": "http.keep_alive_timeout_s",
    "sse_heartbeat_s": "http.sse_heartbeat_s",
    "http_header_timeout_s": "http.header_timeout_s",
    "max_connections": "http.max_connections",
    "max_connections_per_address": "http.max_connections_per_address",
    "auth_failure_limit": "http.auth_failure_limit",
    "auth_failure_window_s": "http.auth_failure_window_s",
    "trusted_proxies": "http.trusted_proxies",
    "endpoint_limits": "http.endpoint_limits",
    "download_concurrency": "http.download_concurrency",
    "download_bytes_per_minute": "http.download_bytes_per_minute",
    "token_max_days": "http.token_max_days",
    "database_path": "storage.database_path",
    "jobs_dir": "storage.jobs_dir",
    "log_file": "storage.log_file",
    "ledger_reserve_bytes": "storage.ledger_reserve_bytes",
    "disk_free_floor_bytes": "storage.disk_free_floor_bytes",
    "retention_days": "storage.retention_days",
    "artifact_retention": "storage.artifact_retention",
    "dashboard_active_jobs": "reads.dashboard_active_jobs",
    "dashboard_users": "reads.dashboard_users",
    "snapshot_every": "reads.snapshot_every",
    "finished_jobs_cached": "reads.finished_jobs_cached",
    "asof_workers": "reads.asof_workers",
    "sync_wait_timeout": "queue.sync_wait_timeout",
    "max_expected_time": "queue.max_expected_time",
    "max_code_bytes": "queue.max_code_bytes",
    "max_config_bytes": "queue.max_config_bytes",
    "project_max_bytes": "queue.project_max_bytes",
    "rate_limit_per_minute": "queue.rate_limit_per_minute",
    "max_active_jobs_per_user": "queue.max_active_jobs_per_user",
    "admin_rate_limit_exempt": "queue.admin_rate_limit_exempt",
    "quota_submissions": "queue.quota_submissions",
    "array_max_tasks": "queue.array_max_tasks",
    "quota_gpu_hours": "queue.quota_gpu_hours",
    "retries": "queue.retries",
    "retry_on": "queue.retry_on",
    "fairshare_half_life": "fairshare.half_life",
    "fairshare_weight": "fairshare.weight",
    "fairshare_age_weight": "fairshare.age_weight",
    "fairshare_age_max": "fairshare.age_max",
    "fairshare_priority_weight": "fairshare.priority_weight",
    "code_scanner_enabled": "scanner.enabled",
    "code_scanner_quick_mode": "scanner.quick_mode",
    "code_scanner_base_url": "scanner.base_url",
    "code_scanner_model": "scanner.model",
    "code_scanner_fail_open": "scanner.fail_open",
    "code_scanner_timeout_s": "scanner.timeout_s",
    "openrouter_api_key": "scanner.openrouter_api_key",
    "nodes": "ssh.nodes",
    "gpu_node_prefix": "ssh.node_prefix",
    "gpu_node_count": "ssh.node_count",
    "gpu_node_port": "ssh.node_port",
    "gpu_user": "ssh.user",
    "jump_host": "ssh.jump_host",
    "jump_port": "ssh.jump_port",
    "jump_user": "ssh.jump_user",
    "ssh_key_file": "ssh.key_file",
    "ssh_known_hosts": "ssh.known_hosts",
    "ssh_keepalive_s": "ssh.keepalive_s",
    "ssh_connect_timeout_s": "ssh.connect_timeout_s",
    "node_down_after_failures": "ssh.down_after_failures",
    "node_probe_interval_s": "ssh.probe_interval_s",
    "lxc_restart_between_jobs": "lxc.restart_between_jobs",
    "lxc_container_prefix": "lxc.container_prefix",
    "lxc_restart_command": "lxc.restart_command",
    "lxc_restart_wait_time": "lxc.restart_wait_time",
    "remote_root": "runner.remote_root",
    "job_command": "runner.command",
    "local_slots": "runner.local_slots",
    "local_gpus": "runner.local_gpus",
    "node_lost_after": "runner.node_lost_after",
    "cancel_grace_s": "runner.cancel_grace_s",
    "max_output_bytes": "runner.max_output_bytes",
    "max_results_bytes": "runner.max_results_bytes",
    "inline_output_bytes": "runner.inline_output_bytes",
    "max_job_timeout_multiplier": "runner.max_job_timeout_multiplier",
    "job_max_disk": "runner.max_disk",
    "job_env": "runner.env",
    "artifact_max_bytes": "runner.artifact_max_bytes",
    "artifact_quota_bytes": "runner.artifact_quota_bytes",
    "job_sandbox": "sandbox.mode",
    "job_network": "sandbox.network",
    "job_readonly_paths": "sandbox.readonly_paths",
    "job_uid_base": "sandbox.uid_base",
    "job_max_processes": "sandbox.max_processes",
    "job_max_open_files": "sandbox.max_open_files",
    "job_max_memory_bytes": "sandbox.max_memory_bytes",
    "job_gpu_device_dir": "sandbox.gpu_device_dir",
    "nvidia_smi": "sandbox.nvidia_smi",
    "job_cgroups": "sandbox.cgroups",
    "job_cgroup_parent": "sandbox.cgroup_parent",
    "job_memory_share": "sandbox.memory_share",
    "job_tmpfs_share": "sandbox.tmpfs_share",
    "job_cpu_weight": "sandbox.cpu_weight",
    "job_cpu_quota": "sandbox.cpu_quota",
    "notify_allowed": "notify.allowed",
    "notify_attempts": "notify.attempts",
    "notify_backoff_s": "notify.backoff_s",
    "notify_timeout_s": "notify.timeout_s",
    "notify_request_timeout_s": "notify.request_timeout_s",
    "notify_link_base": "notify.link_base",
    "gpu_sample_s": "gpu.sample_s",
    "gpu_idle_policy": "gpu.idle_policy",
    "gpu_idle_minutes": "gpu.idle_minutes",
    "gpu_idle_util": "gpu.idle_util",
    "gpu_series_points": "gpu.series_points",
    "gpu_idle_charge_factor": "gpu.idle_charge_factor",
    "env_index_url": "env.index_url",
    "env_find_links": "env.find_links",
    "env_cache_max_bytes": "env.cache_max_bytes",
    "env_setup_timeout_s": "env.setup_timeout_s",
    "env_uv": "env.uv",
}
TABLES = ("slurm", "replica")  # TOML tables that are groups of their own, under the same name
GROUPED = {where: flat for flat, where in FLAT.items()}
SECRET_SETTINGS = ("openrouter_api_key",)


def _group(kind: type[Any]) -> Any:
    return msgspec.field(default_factory=kind)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of the server, one group per reader; each reader is handed its group."""

    http: HttpSettings = _group(HttpSettings)
    storage: StorageSettings = _group(StorageSettings)
    reads: ReadsSettings = _group(ReadsSettings)
    queue: QueueSettings = _group(QueueSettings)
    fairshare: FairshareSettings = _group(FairshareSettings)
    scanner: ScannerSettings = _group(ScannerSettings)
    ssh: SshSettings = _group(SshSettings)
    lxc: LxcSettings = _group(LxcSettings)
    runner: RunnerSettings = _group(RunnerSettings)
    sandbox: SandboxSettings = _group(SandboxSettings)
    notify: NotifySettings = _group(NotifySettings)  # end-of-job notifications (docs: "Notifications")
    gpu: GpuSettings = _group(GpuSettings)
    env: EnvSettings = _group(EnvSettings)  # declared environments (docs: "Declared environments")
    # Slurm executor (a [slurm] table replaces the local runner and SSH nodes)
    slurm: SlurmSettings | None = None
    # continuous replication (docs/admin-guide.md, "Replication"): Litestream and the blobs to one target
    replica: ReplicaSettings | None = None

    def redacted(self) -> dict[str, Any]:
        """The flat settings as users write them (``config show``), secrets as ``***``."""
        data = flat_values(self)
        for secret in SECRET_SETTINGS:
            if data.get(secret):
                data[secret] = "***"
        return data


def flat_values(settings: Settings) -> dict[str, Any]:
    """Each setting under its flat name, as plain values."""
    grouped: dict[str, Any] = msgspec.to_builtins(settings)
    data = {flat: grouped[where.split(".")[0]][where.split(".")[1]] for flat, where in FLAT.items()}
    data.update({table: grouped.get(table) for table in TABLES})
    return data


def grouped_values(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat settings (TOML keys, environment) as ``Settings`` takes them; raises KeyError for an
    unknown name."""
    grouped: dict[str, Any] = {}
    for name, value in flat.items():
        if name in TABLES:
            grouped[name] = value
            continue
        group, field = FLAT[name].split(".")
        grouped.setdefault(group, {})[field] = value
    return grouped


def from_flat(flat: dict[str, Any]) -> Settings:
    """Settings from flat names (as tests and ``gpuledger.toml`` write them), validated."""
    return msgspec.convert(grouped_values(flat), Settings, strict=False)
