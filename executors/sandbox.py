"""The job sandbox seen from the server: the spec a job's wrapper gets, and whether a node can build one.

The wrapper (``executors/wrapper.py``) builds the sandbox on the node with bubblewrap; this side only
decides what goes into ``job.json`` and asks the node, through the same wrapper, whether it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from executors import protocol as wp
from executors.errors import RemoteCommandFailed
from executors.seccomp import seccomp_program
from executors.transport import Transport
from executors.visibility import holds
from ledger.store.settings import SandboxSettings

log = structlog.get_logger()
DISABLED_WARNING = 'JOB_SANDBOX = "none": submitted code runs unconfined, with the rights of the node user'
CGROUPS_DISABLED_WARNING = (
    "JOB_CGROUPS = false: jobs have no memory, process or CPU limit of their own; one job can exhaust the node"
)


def sandbox_spec(
    sandbox: SandboxSettings,
    slot: int,
    *,
    readonly_paths: Sequence[str] = (),
    gpus: list[int] | None = None,
    gpu_indices: list[int] | None = None,
    gpus_from_slurm: bool = False,
) -> wp.SandboxSpec:
    """The slot's uid is JOB_UID_BASE + slot, so jobs in different slots cannot touch each other either.

    The job's GPUs: ``gpus`` as device minors, ``gpu_indices`` as nvidia-smi indices (the wrapper maps
    them on the node), or Slurm's allocation; none of them given, the job sees no GPU at all."""
    return wp.SandboxSpec(
        mode=sandbox.mode,
        network=sandbox.network,
        readonly_paths=[*sandbox.readonly_paths, *readonly_paths],
        uid=sandbox.uid_base + slot,
        gpus=gpus,
        gpu_indices=gpu_indices,
        gpus_from_slurm=gpus_from_slurm,
        gpu_device_dir=sandbox.gpu_device_dir,
        nvidia_smi=sandbox.nvidia_smi,
        limits=wp.Limits(
            max_processes=sandbox.max_processes,
            max_open_files=sandbox.max_open_files,
            max_memory_bytes=sandbox.max_memory_bytes,
        ),
    )


def outside(paths: Sequence[str], private: Sequence[str]) -> list[str]:
    """``paths`` without any that is, or holds, one of the server's private paths (they stay unseen)."""
    return [str(Path(c).resolve()) for c in paths if not any(holds(c, p) for p in private)]


async def sandbox_problem(transport: Transport, root: str, sandbox: SandboxSettings) -> str | None:
    """None when the node can sandbox jobs as the wrapper would; otherwise why not, naming the fix."""
    parent = sandbox.cgroup_parent if sandbox.cgroups else None
    command = wp.probe_command(transport.python, root, sandbox.uid_base, parent)
    code, out, err = await transport.run(command, timeout=60)
    if code in (9, wp.WRAPPER_USAGE):  # no wrapper or filter there yet, or an older wrapper: put ours, ask again
        await transport.put_files(root, {wp.WRAPPER_NAME: wp.WRAPPER_SOURCE, wp.SECCOMP_NAME: seccomp_program()})
        code, out, err = await transport.run(command, timeout=60)
    if code != 0:
        raise RemoteCommandFailed("sandbox probe", code, err or out)
    probe = wp.decode_probe(out.strip().splitlines()[-1])
    log_own_ids(transport.node, probe)
    return None if probe.ok else probe.reason or "the sandbox probe failed"


def log_own_ids(node: str, probe: wp.Probe) -> None:
    """Once per probe of a non-root node: whether its jobs get subordinate ids, and if not, why."""
    if probe.as_root:
        return
    if probe.own_ids is not None:
        log.info("sandbox.own_ids", node=node, ids=probe.own_ids)
        return
    effect = "jobs run as the node user: they can read what it can read among the bound paths"
    log.warning("sandbox.own_ids_off", node=node, reason=probe.own_ids_off, effect=effect)
