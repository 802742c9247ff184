"""What an executor is: one way of running jobs (local, SSH nodes, Slurm), as the rest of the server sees it.

An executor is started by ``executors.registry`` from the settings and from then on speaks to the
server only through this face and through ledger events: it registers its nodes (``node.registered``
with its ``kind``), reports their health (``node.up`` / ``node.down``), and its runners record each
job's life (``job.started``, ``job.handed_off``, ``job.finished``...). The contract in words is
docs/design.md, "Executors".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from executors.runner import NodeRunner
from projections.plan import ExternalStatus


@runtime_checkable
class Executor(Protocol):
    """A started executor: its nodes' runners, what one job may ask of it, its own scheduler's word."""

    # The ``kind`` of the nodes it registers (``node.registered``): "local", "ssh", "slurm".
    kind: str
    # True: its jobs are held by our cgroups (JOB_CGROUPS); False: by its own scheduler's (Slurm's).
    uses_job_cgroups: bool

    @property
    def runners(self) -> Mapping[str, NodeRunner]:
        """Each ledger node it registered, with the runner the dispatcher hands that node's jobs to (the
        wrapper protocol's job lifecycle, ``executors.runner``; Slurm's is a subclass)."""
        ...

    def largest_job_gpus(self) -> int | None:
        """The most GPUs one job may ask for; None: the largest of its registered nodes."""
        ...

    def largest_job_memory(self) -> int | None:
        """The most memory one job may ask for; None where it is not known here."""
        ...

    def pending_board(self) -> Mapping[str, ExternalStatus]:
        """Its own scheduler's word on jobs handed to it and not started (reason, start estimate); {} if none."""
        ...

    def describe(self) -> dict[str, object] | None:
        """The cluster as its own scheduler shows it, for /api/nodes and the dashboard; None if it has none."""
        ...

    async def close(self) -> None:
        """Stop its background work and connections; jobs keep running and are re-attached next start."""
        ...
