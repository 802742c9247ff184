"""Every executor the server knows, in one list: the only module outside an executor's own package
that names it (tests/test_executor_registry.py holds it so).

The composition root asks ``start_executor`` for the one the settings choose. Adding an executor
(Kubernetes, say: docs/design.md, "Executors") is its own package, its settings table in
``ledger/store/settings.py`` and an entry here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from executors.interface import Executor
from executors.services import Services
from ledger.store.settings import Settings


@dataclass(frozen=True, slots=True)
class ExecutorEntry:
    kind: str  # the ``kind`` of the nodes it registers
    chosen: Callable[[Settings], bool]  # whether these settings ask for it
    start: Callable[[Services], Awaitable[Executor]]


# Each package is imported only when chosen (asyncssh and its crypto are a fifth of the server's
# imports: a local-only server answers /livez that much sooner after its start).


async def _start_slurm(services: Services) -> Executor:
    from executors.slurm.cluster import start_slurm

    assert services.settings.slurm is not None  # chosen only with a [slurm] table
    return await start_slurm(services, services.settings.slurm)


async def _start_ssh(services: Services) -> Executor:
    from executors.ssh.nodes import start_ssh_nodes

    return await start_ssh_nodes(services)


async def _start_local(services: Services) -> Executor:
    from executors.local.node import start_local

    return await start_local(services)


# In order of precedence: the first chosen one runs (a [slurm] table replaces SSH nodes and the local node).
EXECUTORS: tuple[ExecutorEntry, ...] = (
    ExecutorEntry("slurm", lambda settings: settings.slurm is not None, _start_slurm),
    ExecutorEntry("ssh", lambda settings: bool(settings.ssh.node_specs()), _start_ssh),
    ExecutorEntry("local", lambda settings: True, _start_local),
)


def chosen_executor(settings: Settings) -> ExecutorEntry:
    """The executor these settings ask for (the local one when nothing else is configured)."""
    return next(entry for entry in EXECUTORS if entry.chosen(settings))


async def start_executor(services: Services) -> Executor:
    """Start the chosen executor: its nodes registered and probed, its background work running."""
    return await chosen_executor(services.settings).start(services)
