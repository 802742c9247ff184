"""Everything the server runs besides HTTP: the ledger, the node runners, the dispatcher, reviews.

Start order: ledger (migrations, projections caught up), nodes registered from settings, runners,
re-attach of jobs the ledger shows on nodes, then the dispatcher. Stop leaves jobs running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from executors.dispatcher import Dispatcher
from executors.runner import NodeRunner, gpu_environment, no_gpu_environment
from executors.scan.review import start_reviews
from executors.services import Services
from executors.slurm.cluster import SlurmCluster, start_slurm
from executors.ssh.nodes import start_ssh_nodes
from executors.transport import LocalTransport
from ledger import commands
from ledger.blobs import BlobStore
from ledger.events import NodeRegistered
from ledger.settings import Settings, SlurmSettings
from ledger.tokens import mint
from projections.live import open_ledger
from projections.plan import PlanCache
from projections.token_usage import TokenUsage

log = structlog.get_logger()
LOCAL_NODE = "local"


def local_gpu_count() -> int:
    """GPUs that ``nvidia-smi -L`` lists; 0 without a driver."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = open_ledger(settings.database_path)
        self.blobs = BlobStore(settings.jobs_dir)
        self.services = Services(ledger=self.ledger, blobs=self.blobs, settings=settings)
        self.runners: dict[str, NodeRunner] = {}
        self.dispatcher = Dispatcher(self.ledger, self.runners)
        self.background: list[asyncio.Task[None]] = []
        self.started = False
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.token_usage = TokenUsage(settings.database_path)
        self.plans = PlanCache()
        self.local_root = str(Path(settings.jobs_dir).resolve() / "work")
        self.slurm: SlurmCluster | None = None

    async def start(self) -> None:
        await self.ledger.start()
        await self._bootstrap_admin()
        self.background.append(asyncio.create_task(self.token_usage.run(), name="token-usage"))
        if self.settings.slurm is not None:
            await self._start_slurm(self.settings.slurm)
        elif self.settings.node_specs():
            fleet = await start_ssh_nodes(self.services)
            self.runners.update(fleet.runners)
            self.background.extend(fleet.tasks)
            self.on_stop.append(fleet.close)
        else:
            await self._start_local_node()
        await self._retire_absent_nodes()
        self.dispatcher.reattach()
        self.dispatcher.start()
        review = start_reviews(self.services)
        if review is not None:
            self.background.append(review)
        self.started = True

    async def stop(self) -> None:
        """Stop watching jobs and close the ledger; jobs keep running and are re-attached next start."""
        await self.dispatcher.stop()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        for runner in self.runners.values():
            await runner.stop()
        for hook in self.on_stop:
            await hook()
        await self.token_usage.flush()
        await self.ledger.close()

    async def _retire_absent_nodes(self) -> None:
        """Nodes of an earlier configuration (e.g. ``local`` before SSH nodes were set) would stay idle
        forever and have jobs planned onto them: a ``node.retired`` event takes them out."""
        for name, node in list(self.ledger.views.nodes.items()):
            if name not in self.runners and not node.retired:
                await self.ledger.write(commands.retire_node(name))
                log.info("node.retired", node=name)

    async def _start_slurm(self, slurm: SlurmSettings) -> None:
        """A [slurm] table: jobs go to the cluster; no local runner, no SSH nodes."""
        self.slurm = await start_slurm(self.services, slurm)
        self.runners[self.slurm.node] = self.slurm.runner
        self.plans.external = lambda: self.slurm.board if self.slurm is not None else {}
        self.on_stop.append(self.slurm.close)

    def slurm_info(self) -> dict[str, object] | None:
        return None if self.slurm is None else self.slurm.describe()

    def largest_node_gpus(self) -> int:
        """The most GPUs one job may ask for: a job never spans nodes."""
        if self.slurm is not None:
            return self.slurm.largest_node_gpus()
        sizes = [n.slots for n in list(self.ledger.views.nodes.values()) if n.name in self.runners]
        return max(sizes, default=1)

    async def _start_local_node(self) -> None:
        gpus = local_gpu_count()
        slots = self.settings.local_slots or gpus or 1
        await self.ledger.write(
            commands.register_node(
                NodeRegistered(name=LOCAL_NODE, host="localhost", port=0, user="", slots=slots, kind="local")
            )
        )

        self.runners[LOCAL_NODE] = NodeRunner(
            node=LOCAL_NODE,
            transport=LocalTransport(LOCAL_NODE, python=sys.executable),
            ledger=self.ledger,
            blobs=self.blobs,
            settings=self.settings,
            remote_root=self.local_root,
            env_for_slots=gpu_environment if gpus else no_gpu_environment,
        )
        log.info("node.local", slots=slots, gpus=gpus)

    def _save_admin_token(self, secret: str) -> Path:
        """The first admin token, in a 0600 file next to the ledger (created with that mode, never wider)."""
        path = Path(self.settings.database_path).resolve().parent / "admin-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        path.chmod(0o600)
        return path

    async def _bootstrap_admin(self) -> None:
        """First start of an empty ledger: issue an admin token and print it once (as Jupyter does)."""
        if self.ledger.views.tokens:
            return
        secret, issued = mint("admin", secret=None, days=self.settings.token_max_days, is_admin=True, by="system")
        await self.ledger.write(commands.issue_token(issued))
        saved = self._save_admin_token(secret)
        # Between JSON log lines when stderr is not a terminal: blank lines and a banner make it stand out.
        print(
            f"\n{'=' * 72}\n  gpuledger: first start, admin token for user 'admin' (shown once, valid "
            f"{self.settings.token_max_days} days):\n\n      {secret}\n\n"
            f"  Also saved to {saved} (readable by you only). In your shell:\n"
            f"      export GPULEDGER_TOKEN=$(cat {saved})\n{'=' * 72}\n",
            file=sys.stderr,
            flush=True,
        )
        log.info("token.bootstrap", token_id=issued.token_id, user_id="admin")
