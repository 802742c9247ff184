"""GPU nodes over SSH: registration, health probes (down/up), LXC restarts between jobs.

Before the dispatcher starts, every node is probed once, so a node with an unknown or changed host
key is ``down`` (with that reason) before anything could be dispatched to it.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog

from executors.errors import AuthenticationFailed, ExecutorError, HostKeyRejected, NodeUnreachable
from executors.runner import NodeRunner, gpu_environment
from executors.sandbox import sandbox_problem, sandbox_spec
from executors.services import Services
from executors.ssh.connection import JumpConnection, NodeConnection
from executors.ssh.transport import SshTransport
from ledger.domain.errors import DomainError, LedgerUnavailable
from ledger.domain.events import NodeRegistered, NodeRestarted
from ledger.store import commands
from ledger.store.settings import NodeSpec, Settings
from projections.plan import ExternalStatus

log = structlog.get_logger()


def container_of(spec: NodeSpec, index: int, settings: Settings) -> str:
    """The node's LXC container: its own ``container``, else ``LXC_CONTAINER_PREFIX-<n>``."""
    if spec.container:
        return spec.container
    match = re.search(r"(\d+)$", spec.name)
    return f"{settings.lxc.container_prefix}-{match.group(1) if match else index}"


class SshNode:
    """One node's connection, transport, runner and health."""

    def __init__(self, services: Services, spec: NodeSpec, index: int, jump: JumpConnection | None) -> None:
        self.services = services
        self.settings = services.settings
        self.spec = spec
        self.conn = NodeConnection(self.settings.ssh, spec, jump=jump)
        self.transport = SshTransport(self.conn)
        self.jump = jump
        self.container = container_of(spec, index, self.settings)
        self.failures = 0
        self.runner = NodeRunner(
            node=spec.name,
            transport=self.transport,
            ledger=services.ledger,
            blobs=services.blobs,
            settings=self.settings,
            remote_root=self.settings.runner.remote_root,
            env_for_slots=gpu_environment,
            # A node is one machine (an LXC container); a job sees the GPUs of its own slots only
            # (slot N is nvidia-smi's GPU N there, mapped to its device by the wrapper on the node).
            sandbox_for_slots=lambda slots: sandbox_spec(self.settings.sandbox, slots[0], gpu_indices=list(slots)),
            after_job=self.after_job,
            restart_container=self.container if self.settings.lxc.restart_between_jobs else None,
            node_memory=spec.memory_bytes,
        )

    async def probe(self, *, strict: bool = False) -> bool:
        """One health check; records node.down / node.up when the health changes.

        ``strict`` (the probe at start): any failure marks the node down at once.
        """
        try:
            await self.transport.probe()
            problem = await self._sandbox_problem(strict)
        except (HostKeyRejected, AuthenticationFailed) as e:
            await self._health(False, str(e), failures=self.failures + 1)  # config problem: down at once
            return False
        except ExecutorError as e:
            self.failures += 1
            if strict or self.failures >= self.settings.ssh.down_after_failures:
                await self._health(False, f"unreachable: {e}", failures=self.failures)
            return False
        self.failures = 0
        if problem is not None:
            log.error("sandbox.unavailable", node=self.spec.name, reason=problem)
            await self._health(False, f"no sandbox: {problem}")
            return False
        await self._health(True, "probe succeeded")
        return True

    async def _sandbox_problem(self, strict: bool) -> str | None:
        """Asked at start and before a down node comes back; an up node was asked already."""
        if self.settings.sandbox.mode == "none":
            return None
        if not strict and self.services.ledger.views.nodes[self.spec.name].up:
            return None
        return await sandbox_problem(self.transport, self.settings.runner.remote_root, self.settings.sandbox)

    async def _health(self, healthy: bool, reason: str, failures: int = 1) -> None:
        try:
            await self.services.ledger.write(
                commands.node_health(self.spec.name, healthy=healthy, reason=reason, failures=failures)
            )
        except DomainError as e:
            log.info("node.health_refused", node=self.spec.name, error=str(e))
        except LedgerUnavailable as e:  # a full disk: the next probe writes the state again
            log.warning("node.health_unrecorded", node=self.spec.name, error=str(e))

    async def watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ssh.probe_interval_s)
            state = self.services.ledger.views.nodes[self.spec.name]
            if not state.restarting:
                await self.probe()

    async def after_job(self) -> None:
        """If the finish put the node into ``restarting``, restart its container and wait for it."""
        if self.services.ledger.views.nodes[self.spec.name].restarting:
            await self.restart()

    async def restart(self) -> None:
        started = time.monotonic()
        command = self.settings.lxc.restart_command.format(container=shlex.quote(self.container))
        outcome: Literal["ok", "failed", "timeout"] = "ok"
        detail = ""
        try:
            if self.jump is None:
                raise ExecutorError("LXC_RESTART_BETWEEN_JOBS needs JUMP_HOST: the restart runs on the jump host")
            await self.jump.run(command, timeout=self.settings.lxc.restart_wait_time + 30)
            await self.conn.close()  # the old session died with the container
            outcome, detail = await self._wait_answering(started)
        except ExecutorError as e:
            outcome, detail = "failed", str(e)
        duration = round(time.monotonic() - started, 3)
        log.info("node.restarted", node=self.spec.name, container=self.container, outcome=outcome, duration=duration)
        await self.services.ledger.write(
            commands.restarted_node(
                self.spec.name,
                NodeRestarted(
                    name=self.spec.name, container=self.container, duration_s=duration, outcome=outcome, detail=detail
                ),
            )
        )

    async def _wait_answering(self, started: float) -> tuple[Literal["ok", "timeout"], str]:
        deadline = started + self.settings.lxc.restart_wait_time + self.settings.ssh.connect_timeout_s + 10
        while time.monotonic() < deadline:
            try:
                await self.transport.probe()
                return "ok", ""
            except NodeUnreachable:
                await asyncio.sleep(0.5)
        return "timeout", f"node did not answer within {self.settings.lxc.restart_wait_time:g} s of the restart"


@dataclass
class SshFleet:
    """The SSH executor (``executors.interface.Executor``): the started nodes, their runners, their
    background tasks (health, restarts), their connections."""

    nodes: list[SshNode]
    jump: JumpConnection | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    kind: str = "ssh"
    uses_job_cgroups: bool = True

    @property
    def runners(self) -> Mapping[str, NodeRunner]:
        return {node.spec.name: node.runner for node in self.nodes}

    def largest_job_gpus(self) -> int | None:
        return None

    def largest_job_memory(self) -> int | None:
        """The largest node's memory, when every node's is configured (else the wrapper holds the job)."""
        caps = [node.spec.memory_bytes for node in self.nodes]
        return None if not caps or None in caps else max(c for c in caps if c is not None)

    def pending_board(self) -> Mapping[str, ExternalStatus]:
        return {}

    def describe(self) -> dict[str, object] | None:
        return None

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for node in self.nodes:
            await node.conn.close()
        if self.jump is not None:
            await self.jump.close()


async def start_ssh_nodes(services: Services) -> SshFleet:
    """Register every configured node, probe each once, then watch their health."""
    settings, ledger = services.settings, services.ledger
    jump = JumpConnection(settings.ssh) if settings.ssh.jump_host else None
    fleet = SshFleet(
        [SshNode(services, spec, index, jump) for index, spec in enumerate(settings.ssh.node_specs())], jump
    )
    for node in fleet.nodes:
        spec = node.spec
        await ledger.write(
            commands.register_node(
                NodeRegistered(
                    name=spec.name,
                    host=spec.host,
                    port=spec.port,
                    user=spec.user or settings.ssh.user,
                    slots=spec.slots,
                    container=node.container,
                    kind="ssh",
                )
            )
        )
    await asyncio.gather(*(node.probe(strict=True) for node in fleet.nodes))
    for node in fleet.nodes:
        fleet.tasks.append(asyncio.create_task(node.watch_health(), name=f"health-{node.spec.name}"))
        if ledger.views.nodes[node.spec.name].restarting:  # a restart cut short by our own restart
            fleet.tasks.append(asyncio.create_task(node.restart(), name=f"restart-{node.spec.name}"))
    return fleet
