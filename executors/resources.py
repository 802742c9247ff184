"""How much of its node a job may use: its cgroup's memory, pids and CPU, as the wrapper applies them.

The numbers are decided here, once per attempt, from the settings, the node and the job's own ``memory``;
the wrapper (``executors/wrapper.py``) makes the cgroup on the node. See docs/admin-guide.md,
"Resource limits".
"""

from __future__ import annotations

from pathlib import Path

from executors import protocol as wp
from ledger.domain.jobs import JobState
from ledger.store.settings import SandboxSettings

MEMINFO = Path("/proc/meminfo")


def host_memory() -> int | None:
    """This host's RAM (MemTotal) in bytes, or None where it cannot be read."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def local_memory_cap(sandbox: SandboxSettings) -> int | None:
    """What the local node gives its jobs in all: JOB_MEMORY_SHARE of this host's RAM (None: no cap)."""
    total = host_memory()
    if total is None or sandbox.memory_share <= 0:
        return None
    return int(total * sandbox.memory_share)


def job_resources(
    sandbox: SandboxSettings, job: JobState, *, node_slots: int, node_memory: int | None, cgroups: bool = True
) -> wp.Resources:
    """A job's limits on one node: the memory it asked for (``memory:``, never above the node's), or
    its slots' part of the node's memory; where the server does not know the node's memory, the
    wrapper takes the same part of the node's MemTotal there."""
    part = min(job.gpus, max(node_slots, 1)) / max(node_slots, 1)
    memory_bytes, memory_share = 0, 0.0
    if job.memory:
        memory_bytes = job.memory if node_memory is None else min(job.memory, node_memory)
    elif node_memory is not None:
        memory_bytes = int(node_memory * part)
    else:
        memory_share = sandbox.memory_share * part
    return wp.Resources(
        cgroups=cgroups and sandbox.cgroups,
        cgroup_parent=sandbox.cgroup_parent,
        memory_bytes=memory_bytes,
        memory_share=memory_share,
        tmpfs_share=sandbox.tmpfs_share,
        max_pids=sandbox.max_processes,
        cpu_weight=sandbox.cpu_weight,
        cpu_quota=sandbox.cpu_quota * job.gpus,
    )
