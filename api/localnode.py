"""The local node: this machine's GPUs as ``nvidia-smi`` lists them, its runner and its sandbox check.

Used by the composition root (``api.runtime``) when the server runs jobs itself (no SSH nodes, no Slurm).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import structlog

from executors.protocol import SandboxSpec
from executors.resources import local_memory_cap
from executors.runner import NodeRunner
from executors.sandbox import outside, sandbox_problem, sandbox_spec
from executors.transport import LocalTransport
from ledger import commands
from ledger.blobs import BlobStore
from ledger.events import NodeRegistered
from ledger.settings import Settings
from ledger.writer import Ledger
from projections.views import Views

log = structlog.get_logger()
LOCAL_NODE = "local"
GPU_UUID = re.compile(r"\(UUID: (GPU-[0-9a-fA-F-]+)\)")


def local_gpus() -> list[str]:
    """The UUID (or, without one, the index) of each GPU that ``nvidia-smi -L`` lists; [] without a driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return [m.group(1) if (m := GPU_UUID.search(line)) else str(i) for i, line in enumerate(lines)]


def local_gpu_minors() -> dict[int, int]:
    """nvidia-smi's index -> device minor (/dev/nvidia<minor>); {} without a driver or an answer."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = ["nvidia-smi", "--query-gpu=index,minor_number", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    pairs = [line.replace(" ", "").split(",") for line in out.stdout.splitlines()]
    return {int(p[0]): int(p[1]) for p in pairs if len(p) == 2 and p[0].isdigit() and p[1].isdigit()}


def python_paths(private: list[str]) -> list[str]:
    """The server's Python environment, for jobs to import from (read-only), unless it holds server data."""
    return outside(sorted({sys.prefix, sys.base_prefix, sys.exec_prefix}), private)


async def start_local_node(ledger: Ledger[Views], blobs: BlobStore, settings: Settings, local_root: str) -> NodeRunner:
    """Register the local node, build its runner and record whether its sandbox works."""
    gpus = local_gpus()
    slots = settings.local_slots or len(gpus) or 1
    gpu_count = len(gpus) if settings.local_gpus is None else settings.local_gpus
    await ledger.write(
        commands.register_node(
            # GPUs as nvidia-smi lists them: none on a machine without a driver (CPU-only slots)
            NodeRegistered(
                name=LOCAL_NODE, host="localhost", port=0, user="", slots=slots, kind="local", gpus=gpu_count
            )
        )
    )
    private = [settings.jobs_dir, settings.database_path, settings.log_file, "."]
    readonly = python_paths(private)
    # The server's interpreter first on PATH, so `python3 {solution}` imports what the server has.
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

    def env_for_slots(slots: list[int]) -> dict[str, str]:
        # Pinned by UUID where known: inside the sandbox the slot's GPU may be the only one, index 0.
        visible = ",".join(gpus[slot % len(gpus)] for slot in slots) if gpus else None
        return {"PATH": path, **({"CUDA_VISIBLE_DEVICES": visible} if visible else {})}

    minors = local_gpu_minors()
    if gpus and len(minors) < len(gpus):  # fail closed: a job is never handed a GPU we cannot name
        log.error("gpu.minors_unknown", reason="nvidia-smi gave no index,minor_number", effect="jobs see no GPU")

    def sandbox_for_slots(slots: list[int]) -> SandboxSpec:
        held = {slot % len(gpus) for slot in slots} if gpus else set()
        bound = sorted(minors[index] for index in held if index in minors)
        return sandbox_spec(settings, slots[0], readonly_paths=readonly, gpus=bound)

    transport = LocalTransport(LOCAL_NODE, python=sys.executable)
    runner = NodeRunner(
        node=LOCAL_NODE,
        transport=transport,
        ledger=ledger,
        blobs=blobs,
        settings=settings,
        remote_root=local_root,
        env_for_slots=env_for_slots,
        sandbox_for_slots=sandbox_for_slots,
        node_memory=local_memory_cap(settings),
    )
    await check_local_sandbox(ledger, transport, local_root, settings)
    log.info("node.local", slots=slots, gpus=len(gpus), sandbox=settings.job_sandbox)
    return runner


async def check_local_sandbox(
    ledger: Ledger[Views], transport: LocalTransport, local_root: str, settings: Settings
) -> None:
    """No sandbox, no jobs: the local node is down with the reason, unless the admin turned it off."""
    if settings.job_sandbox == "none":
        healthy, reason = True, "sandbox disabled"
    else:
        problem = await sandbox_problem(transport, local_root, settings)
        if problem is not None:  # one line, on the console and in the log, naming the fix
            log.error("sandbox.unavailable", node=LOCAL_NODE, reason=problem, effect="node down, no job runs")
        healthy, reason = problem is None, f"no sandbox: {problem}" if problem else "sandbox ready"
    await ledger.write(commands.node_health(LOCAL_NODE, healthy=healthy, reason=reason))
