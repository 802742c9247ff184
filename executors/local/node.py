"""The server's own machine as one node (``local``): its GPUs, its sandbox check, its runner.

Chosen by the registry when neither a ``[slurm]`` table nor SSH nodes are configured.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from executors.nvml import NvmlProbe
from executors.protocol import SandboxSpec
from executors.resources import local_memory_cap
from executors.runner import NodeRunner
from executors.sandbox import outside, sandbox_problem, sandbox_spec
from executors.services import Services
from executors.transport import LocalTransport, Transport
from ledger.domain.events import NodeRegistered
from ledger.domain.gpu import GpuSample
from ledger.store import commands
from projections.plan import ExternalStatus

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


class LocalNode:
    """The local executor (``executors.interface.Executor``): one node, no scheduler of its own."""

    kind = "local"
    uses_job_cgroups = True

    def __init__(self, services: Services, runner: NodeRunner) -> None:
        self.services, self.runner = services, runner

    @property
    def runners(self) -> Mapping[str, NodeRunner]:
        return {LOCAL_NODE: self.runner}

    def largest_job_gpus(self) -> int | None:
        return None

    def largest_job_memory(self) -> int | None:
        return local_memory_cap(self.services.settings.sandbox)

    def pending_board(self) -> Mapping[str, ExternalStatus]:
        return {}

    def describe(self) -> dict[str, object] | None:
        return None

    async def close(self) -> None:
        return None


def local_runner(services: Services, gpus: list[str]) -> NodeRunner:
    """The local node's runner: each slot pinned to its GPU, the server's Python readable in the sandbox."""
    settings = services.settings
    private = [settings.storage.jobs_dir, settings.storage.database_path, settings.storage.log_file, "."]
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
        return sandbox_spec(settings.sandbox, slots[0], readonly_paths=readonly, gpus=bound)

    return NodeRunner(
        node=LOCAL_NODE,
        transport=LocalTransport(LOCAL_NODE, python=sys.executable),
        ledger=services.ledger,
        blobs=services.blobs,
        settings=settings,
        remote_root=str(Path(settings.storage.jobs_dir).resolve() / "work"),
        env_for_slots=env_for_slots,
        sandbox_for_slots=sandbox_for_slots,
        node_memory=local_memory_cap(settings.sandbox),
        gpu_sampler=nvml_sampler(len(gpus) if settings.runner.local_gpus is None else settings.runner.local_gpus),
    )


def nvml_sampler(gpu_count: int) -> Callable[[list[int]], list[GpuSample]]:
    """A job's slots sampled through NVML in this process; slot n is GPU n (mod the GPUs), as pinned above."""
    probe = NvmlProbe()

    def sample(slots: list[int]) -> list[GpuSample]:
        return probe.sample(sorted({slot % gpu_count for slot in slots}) if gpu_count else [])

    return sample


async def start_local(services: Services) -> LocalNode:
    """Register the local node (GPUs as nvidia-smi lists them: none without a driver, CPU-only slots)."""
    settings = services.settings
    gpus = local_gpus()
    slots = settings.runner.local_slots or len(gpus) or 1
    gpu_count = len(gpus) if settings.runner.local_gpus is None else settings.runner.local_gpus
    spec = NodeRegistered(name=LOCAL_NODE, host="localhost", port=0, user="", slots=slots, kind="local", gpus=gpu_count)
    await services.ledger.write(commands.register_node(spec))
    runner = local_runner(services, gpus)
    await _check_sandbox(services, runner.transport, runner.remote_root)
    log.info("node.local", slots=slots, gpus=len(gpus), sandbox=settings.sandbox.mode)
    return LocalNode(services, runner)


async def _check_sandbox(services: Services, transport: Transport, root: str) -> None:
    """No sandbox, no jobs: the local node is down with the reason, unless the admin turned it off."""
    settings = services.settings
    if settings.sandbox.mode == "none":
        healthy, reason = True, "sandbox disabled"
    else:
        problem = await sandbox_problem(transport, root, settings.sandbox)
        if problem is not None:  # one line, on the console and in the log, naming the fix
            log.error("sandbox.unavailable", node=LOCAL_NODE, reason=problem, effect="node down, no job runs")
        healthy, reason = problem is None, f"no sandbox: {problem}" if problem else "sandbox ready"
    await services.ledger.write(commands.node_health(LOCAL_NODE, healthy=healthy, reason=reason))
