"""The settings groups the executors read: SSH and the nodes, LXC restarts, the job runner and the
sandbox with its cgroup limits. Each constraint is a ``msgspec.Meta``, checked as the settings are read."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ledger.store.settings.tables import NodeSpec

OUTPUT_LIMIT_FACTOR = 2  # see RunnerSettings.running_output_cap
NoLimit0 = Annotated[int, Meta(ge=0)]  # a size or count where 0 means no limit
Share = Annotated[float, Meta(ge=0, le=1)]
# A cgroup path below the root: segments, none of them "." or "..", an optional slash at either end.
CGROUP_PARENT = r"^/?(?!\.\.?(/|$))[^/]+(/(?!\.\.?(/|$))[^/]+)*/?$"


class SshSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.ssh`` (and the replica's sftp target): the nodes and how they are reached."""

    nodes: Annotated[list[NodeSpec], Meta(description="explicit [[nodes]]")] = []
    node_prefix: Annotated[str, Meta(description="prefix of prefixed nodes")] = "gpu-node"
    node_count: Annotated[int, Meta(description="number of prefixed nodes")] = 0
    node_port: Annotated[int, Meta(description="SSH port of prefixed nodes")] = 22
    user: Annotated[str, Meta(description="SSH user on the nodes")] = "gpuuser"
    jump_host: Annotated[str | None, Meta(description="the jump host every node is reached through")] = None
    jump_port: Annotated[int, Meta(description="the jump host's SSH port")] = 22
    jump_user: Annotated[str, Meta(description="the jump host's SSH user")] = "root"
    key_file: Annotated[str | None, Meta(description="private key for both hops")] = None
    known_hosts: Annotated[str | None, Meta(description="pinned host keys of the jump host and nodes")] = None
    keepalive_s: Annotated[float, Meta(description="keep-alive interval of node connections")] = 15.0
    connect_timeout_s: Annotated[float, Meta(description="connect timeout per hop")] = 10.0
    down_after_failures: Annotated[int, Meta(description="failed probes before a node is down")] = 3
    probe_interval_s: Annotated[float, Meta(description="seconds between health probes")] = 5.0

    def node_specs(self) -> list[NodeSpec]:
        """Explicit ``[[nodes]]`` win; otherwise ``GPU_NODE_PREFIX``-0 … -(COUNT-1)."""
        if self.nodes:
            return list(self.nodes)
        return [
            NodeSpec(
                name=f"{self.node_prefix}-{i}", host=f"{self.node_prefix}-{i}", port=self.node_port, user=self.user
            )
            for i in range(self.node_count)
        ]


class LxcSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.ssh.nodes``: restarting a node's container between jobs."""

    restart_between_jobs: Annotated[bool, Meta(description="restart the node's container between jobs")] = False
    container_prefix: Annotated[str, Meta(description="container name <prefix>-<n>")] = "gpu-node"
    restart_command: Annotated[str, Meta(description="run on the jump host")] = "lxc restart {container}"
    restart_wait_time: Annotated[float, Meta(description="seconds to wait after a restart")] = 30.0


class RunnerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.runner`` (local and SSH), the Slurm runner and the runtime: running one job."""

    # on the GPU node, per-job private dirs below it
    remote_root: Annotated[str, Meta(description="per-job private directories on nodes")] = "/tmp/gpuledger"  # noqa: S108
    command: Annotated[str, Meta(description="the job command")] = "python3 {solution}"
    local_slots: Annotated[int, Meta(description="local runner slots (0: one per GPU)")] = 0
    # GPUs of the local node (None: as nvidia-smi lists them; 0: CPU-only slots)
    local_gpus: Annotated[int | None, Meta(description="GPUs of the local node")] = None
    node_lost_after: Annotated[float, Meta(description="seconds unreachable before a job is lost")] = 600.0
    cancel_grace_s: Annotated[float, Meta(description="seconds between TERM and KILL")] = 5.0
    max_output_bytes: Annotated[int, Meta(ge=0, description="stdout/stderr kept per job")] = 64 * 1024 * 1024
    max_results_bytes: Annotated[int, Meta(description="results file size fetched per job")] = 16 * 1024 * 1024
    inline_output_bytes: Annotated[int, Meta(description="output returned inline by results")] = 1024 * 1024
    max_job_timeout_multiplier: Annotated[float, Meta(gt=0, description="killed after expected_time x this")] = 2.0
    max_disk: Annotated[int, Meta(ge=0, description="bytes of workdir and output per job (0: no limit)")] = 10 * 1024**3
    env: Annotated[dict[str, str], Meta(description="variables added to every job's environment")] = {}
    artifact_max_bytes: Annotated[NoLimit0, Meta(description="bytes of artifacts kept per job (0: none kept)")] = (
        256 * 1024 * 1024
    )
    artifact_quota_bytes: Annotated[
        NoLimit0, Meta(description="bytes of stored, unpruned artifacts per user (0: no quota)")
    ] = 10 * 1024**3

    @property
    def running_output_cap(self) -> int:
        """Bytes per output file a running job may write before the wrapper stops it (``output_limit``):
        OUTPUT_LIMIT_FACTOR times what is kept, so a job is stopped only well past the point of truncation."""
        return OUTPUT_LIMIT_FACTOR * self.max_output_bytes


class SandboxSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.sandbox`` and ``executors.resources``: how submitted code is confined."""

    mode: Annotated[Literal["bwrap", "none"], Meta(description="bwrap: every job sandboxed; none: unconfined")] = (
        "bwrap"
    )
    network: Annotated[Literal["none", "host"], Meta(description="the job's network")] = "none"
    readonly_paths: Annotated[
        list[Annotated[str, Meta(pattern="^/", description="an absolute path")]],
        Meta(description="host paths bound read-only into every sandbox"),
    ] = []
    # never a system account, never root
    uid_base: Annotated[int, Meta(ge=1000, le=2**31 - 1024, description="first uid of the job slots")] = 61000
    max_processes: Annotated[NoLimit0, Meta(description="pids.max of a job (0: not set)")] = 4096
    max_open_files: Annotated[NoLimit0, Meta(description="RLIMIT_NOFILE of a job (0: not set)")] = 65536
    max_memory_bytes: Annotated[NoLimit0, Meta(description="RLIMIT_AS of a job (0: not set)")] = 0
    # where nodes keep /dev/nvidia<minor> (tests point it at fake nodes)
    gpu_device_dir: Annotated[str, Meta(description="where nodes keep /dev/nvidia<minor>")] = "/dev"
    # for nodes whose nvidia-smi is outside the wrapper's PATH (tests point it at a fake)
    nvidia_smi: Annotated[
        str, Meta(pattern="^(/.*)?$", description="absolute path of nvidia-smi on the nodes; empty: PATH")
    ] = ""
    cgroups: Annotated[bool, Meta(description="every job in its own cgroup")] = True
    cgroup_parent: Annotated[
        str, Meta(pattern=CGROUP_PARENT, description="a path like gpuledger or a/b (no . or ..)")
    ] = "gpuledger"
    memory_share: Annotated[Share, Meta(description="of a node's RAM for its jobs in all")] = 0.8
    tmpfs_share: Annotated[Share, Meta(description="size of the job's tmpfs, a share of its memory limit")] = 0.5
    # cpu.weight of each job (v2 scale; cpu.shares = 10.24 x on v1)
    cpu_weight: Annotated[int, Meta(ge=1, le=10_000, description="cpu.weight of every job")] = 100
    # CPUs per slot a job may use at most; 0: no quota (weights only)
    cpu_quota: Annotated[float, Meta(ge=0, description="CPUs per slot a job may use at most")] = 0.0
