"""One Slurm cluster seen from gpuledger: a ledger node, a runner, and one poller of squeue/sinfo.

The poller runs ``squeue --json`` once per ``poll_interval_s`` for every job at once (not once per
job) and keeps the snapshot the runners follow; pending jobs' reasons and start estimates from it
are what the status API shows. Slurm unreachable marks the node down (no new hand-offs) and leaves
every handed-off job as it is: unreachable is never read as finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from executors.runner import NodeRunner, no_gpu_environment
from executors.sandbox import sandbox_spec
from executors.services import Services
from executors.slurm.client import SlurmClient, SlurmJob, SlurmNode, gres_gpus
from executors.slurm.errors import SlurmRefused, SlurmUnreachable
from executors.slurm.runner import JOB_NAME_PREFIX, SlurmRunner, job_of_name
from executors.slurm.states import pending_words
from executors.ssh.connection import NodeConnection
from executors.ssh.transport import SshTransport
from executors.transport import LocalTransport, Transport
from ledger.domain.errors import DomainError
from ledger.domain.events import NodeRegistered
from ledger.store import commands
from ledger.store.settings import NodeSpec, SlurmSettings
from projections.plan import ExternalStatus

log = structlog.get_logger()
NODES_EVERY = 10  # sinfo once per this many squeue polls


@dataclass
class Snapshot:
    jobs: dict[str, SlurmJob] = field(default_factory=dict)  # Slurm id -> job (ours only)
    taken_at: float = 0.0  # monotonic time the squeue call began; 0: none yet
    reachable: bool = False
    error: str = ""


class SlurmCluster:
    """The Slurm executor (``executors.interface.Executor``): one ledger node whose jobs Slurm schedules."""

    kind = "slurm"
    uses_job_cgroups = False  # Slurm's own cgroup holds each job (its --mem, its gres)

    def __init__(self, services: Services, slurm: SlurmSettings, transport: Transport, node: str) -> None:
        self.services, self.slurm, self.transport, self.node = services, slurm, transport, node
        self.client = SlurmClient(transport, slurm.partition, slurm.conf)
        self.snapshot = Snapshot()
        self.nodes: list[SlurmNode] = []
        self.board: dict[str, ExternalStatus] = {}  # gpuledger job id -> what Slurm says of it, pending ones
        self._polled = asyncio.Event()
        self.runner = SlurmRunner(
            node=node,
            transport=transport,
            ledger=services.ledger,
            blobs=services.blobs,
            settings=services.settings,
            remote_root=services.settings.runner.remote_root,
            env_for_slots=no_gpu_environment,  # Slurm's gres sets CUDA_VISIBLE_DEVICES on the node
            # The GPUs Slurm allocated, read by the wrapper on the compute node, and no other device.
            sandbox_for_slots=lambda slots: sandbox_spec(services.settings.sandbox, slots[0], gpus_from_slurm=True),
            cluster=self,
        )
        self.tasks: list[asyncio.Task[None]] = []

    # --- what runners ask ----------------------------------------------------------------------

    def job(self, slurm_id: str) -> SlurmJob | None:
        return self.snapshot.jobs.get(slurm_id)

    def knows_since(self, moment: float) -> bool:
        """The snapshot is Slurm's answer from after ``moment``: a job absent from it is really gone."""
        return self.snapshot.reachable and self.snapshot.taken_at > moment

    async def next_poll(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._polled.wait(), timeout=self.slurm.poll_interval_s * 5)

    async def find(self, name: str) -> str | None:
        """The Slurm id of our job by that name (a fresh squeue, not the snapshot), newest first."""
        matches = [j.job_id for j in await self.client.jobs() if j.name == name]
        return str(max(matches)) if matches else None

    # --- what the server asks (executors.interface.Executor) -------------------------------------

    @property
    def runners(self) -> Mapping[str, NodeRunner]:
        return {self.node: self.runner}

    def largest_job_gpus(self) -> int | None:
        sizes = [gres_gpus(n.gres) for n in self.nodes]
        return max(sizes, default=0) or self.slurm.max_gpus_handed_off

    def largest_job_memory(self) -> int | None:
        return None  # Slurm's --mem and its nodes decide

    def pending_board(self) -> Mapping[str, ExternalStatus]:
        return self.board

    def describe(self) -> dict[str, object]:
        """Partitions and nodes as sinfo last showed them (for /api/nodes and the dashboard)."""
        partitions: dict[str, dict[str, Any]] = {}
        for n in self.nodes:
            for name in n.partitions:
                part = partitions.setdefault(name, {"name": name, "nodes": 0, "gpus": 0, "states": {}})
                part["nodes"] += 1
                part["gpus"] += gres_gpus(n.gres)
                part["states"][n.state] = part["states"].get(n.state, 0) + 1
        return {
            "reachable": self.snapshot.reachable,
            "error": self.snapshot.error or None,
            "partitions": list(partitions.values()),
            "nodes": [
                {
                    "name": n.name,
                    "state": n.state,
                    "partitions": n.partitions,
                    "gpus": gres_gpus(n.gres),
                    "gpus_used": gres_gpus(n.gres_used),
                    "reason": n.reason or None,
                }
                for n in self.nodes
            ],
        }

    # --- the poller ----------------------------------------------------------------------------

    async def poll_forever(self) -> None:
        polls = 0
        while True:
            await self.poll_once(with_nodes=polls % NODES_EVERY == 0)
            polls += 1
            await asyncio.sleep(self.slurm.poll_interval_s)

    async def poll_once(self, *, with_nodes: bool = False) -> None:
        began = time.monotonic()
        try:
            jobs = await self.client.jobs()
            if with_nodes:
                self.nodes = await self.client.nodes()
        except (SlurmUnreachable, SlurmRefused) as e:  # e.g. no configuration found: no job is read as ended
            if self.snapshot.reachable:
                log.warning("slurm.unreachable", error=str(e))
            self.snapshot = Snapshot(jobs=self.snapshot.jobs, taken_at=self.snapshot.taken_at, error=str(e))
            await self._health(False, str(e))
        else:
            ours = {str(j.job_id): j for j in jobs if j.name.startswith(JOB_NAME_PREFIX)}
            self.snapshot = Snapshot(jobs=ours, taken_at=began, reachable=True)
            self.board = _pending_board(ours.values())
            await self._health(True, "squeue answered")
        self._polled.set()
        self._polled = asyncio.Event()

    async def _health(self, healthy: bool, reason: str) -> None:
        state = self.services.ledger.views.nodes.get(self.node)
        if state is None or state.up == healthy:
            return
        try:
            await self.services.ledger.write(commands.node_health(self.node, healthy=healthy, reason=reason))
        except DomainError as e:
            log.info("slurm.health_refused", error=str(e))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if isinstance(self.transport, SshTransport):
            await self.transport.conn.close()


def _pending_board(jobs: Iterable[SlurmJob]) -> dict[str, ExternalStatus]:
    board: dict[str, ExternalStatus] = {}
    for j in jobs:
        job_id = job_of_name(j.name)
        if job_id is not None and j.job_state == "PENDING":
            board[job_id] = ExternalStatus(
                reason=pending_words(j.state_reason), start_at=j.start_time * 1_000_000 if j.start_time else None
            )
    return board


def _transport(services: Services, slurm: SlurmSettings) -> Transport:
    if slurm.via == "ssh":
        assert slurm.login_host is not None  # SlurmSettings checks it
        spec = NodeSpec(name="slurm-login", host=slurm.login_host, port=slurm.login_port, user=slurm.login_user)
        return SshTransport(NodeConnection(services.settings.ssh, spec), python=slurm.python)
    return LocalTransport("slurm", python=sys.executable)


async def start_slurm(services: Services, slurm: SlurmSettings) -> SlurmCluster:
    """Register the cluster as one node (its size: the GPUs handed off at once), learn its nodes,
    then poll."""
    node = f"slurm-{slurm.partition or 'default'}"
    cluster = SlurmCluster(services, slurm, _transport(services, slurm), node)
    spec = NodeRegistered(
        name=node,
        host=slurm.login_host or "localhost",
        port=slurm.login_port if slurm.via == "ssh" else 0,
        user=slurm.login_user or "",
        slots=slurm.max_gpus_handed_off,
        kind="slurm",
    )
    await services.ledger.write(commands.register_node(spec))
    await cluster.poll_once(with_nodes=True)
    cluster.tasks.append(asyncio.create_task(cluster.poll_forever(), name="slurm-poll"))
    log.info(
        "slurm.started",
        node=node,
        via=slurm.via,
        nodes=len(cluster.nodes),
        reachable=cluster.snapshot.reachable,
        conf=cluster.client.conf,
        error=cluster.snapshot.error or None,  # what squeue/sinfo answered when the cluster is unreachable
    )
    return cluster
