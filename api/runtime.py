"""Everything the server runs besides HTTP: the ledger, the node runners, the dispatcher, reviews.

Start order: ledger (migrations, projections caught up, in a worker thread: the server is already
listening and answers ``/livez``), nodes registered from settings, runners, re-attach of jobs the
ledger shows on nodes, then the dispatcher. Until ``ready`` every other endpoint answers 503.
Stop leaves jobs running.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import apsw
import structlog

from api.diskuse import DiskUsage
from api.pruner import Retention, prune_hourly
from executors.dispatcher import Dispatcher
from executors.protocol import SandboxSpec
from executors.resources import local_memory_cap
from executors.runner import NodeRunner
from executors.sandbox import CGROUPS_DISABLED_WARNING, DISABLED_WARNING, outside, sandbox_problem, sandbox_spec
from executors.scan.review import start_reviews
from executors.services import Services
from executors.sweep import sweep
from executors.transport import LocalTransport
from ledger import commands, integrity
from ledger.blobs import BlobStore
from ledger.disk import DiskReserve, dispatch_hold, free_bytes
from ledger.errors import StoreError
from ledger.events import NodeRegistered
from ledger.schema import connect
from ledger.settings import Settings, SlurmSettings
from ledger.tokens import mint
from ledger.writer import Ledger
from projections import backfill
from projections.live import open_ledger
from projections.plan import PlanCache
from projections.token_usage import TokenUsage
from projections.views import Views

if TYPE_CHECKING:
    from executors.replica import Replicator
    from executors.slurm.cluster import SlurmCluster

log = structlog.get_logger()
LOCAL_NODE = "local"
HEAD_MARK_S = 1.0  # how often the durable head is recorded beside the ledger (ledger.integrity)
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


class Runtime:
    # Set by start(); nothing reads them before ``started`` (the API answers 503 until then).
    ledger: Ledger[Views]
    services: Services
    dispatcher: Dispatcher

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.blobs = BlobStore(settings.storage.jobs_dir)
        self.runners: dict[str, NodeRunner] = {}
        self.background: list[asyncio.Task[None]] = []
        self.started = False
        self.failed: str | None = None  # why start() failed, for /readyz and the exit status
        self._opened = False
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.token_usage = TokenUsage(settings.storage.database_path)
        self.plans = PlanCache(weights=settings.fairshare.weights())
        self.backfill_stop = threading.Event()
        self.local_root = str(Path(settings.storage.jobs_dir).resolve() / "work")
        self.slurm: SlurmCluster | None = None
        self._mark_error = ""
        self.reserve = DiskReserve(f"{settings.storage.database_path}.reserve", settings.storage.ledger_reserve_bytes)
        self.replica: Replicator | None = None
        self.disk_usage = DiskUsage(
            settings.storage.database_path, settings.storage.jobs_dir
        )  # /metrics, the dashboard

    async def start(self) -> None:
        # Never append to a damaged or shortened ledger: the check reads the file, before anything writes.
        damage = await asyncio.to_thread(integrity.check_file, self.settings.storage.database_path)
        if damage is not None:
            raise StoreError(damage)
        # Loading a long ledger is seconds of CPU and I/O: in a thread, so the loop keeps answering /livez.
        self.ledger = await asyncio.to_thread(self._open_ledger)
        # The loaded views are long-lived and cycle-free: out of the collector's sight, so that a full
        # collection (triggered by any request's garbage) does not rescan them with the GIL held.
        gc.freeze()
        self.services = Services(ledger=self.ledger, blobs=self.blobs, settings=self.settings)
        self.dispatcher = Dispatcher(self.ledger, self.runners, self.settings.fairshare.weights(), self.dispatch_hold)
        self.plans.hold = self.dispatch_hold
        self._opened = True
        await self.ledger.start()
        if self.settings.replica is not None:  # Litestream and the blob copies (docs: "Replication")
            from executors.replica import start_replica

            self.replica = start_replica(self.settings, self.blobs.root)
        self.background.append(
            asyncio.create_task(
                asyncio.to_thread(backfill.run, self.settings.storage.database_path, self.backfill_stop),
                name="backfill",
            )
        )
        self.background.append(asyncio.create_task(self.plans.run(self.ledger), name="queue-plan"))
        self.background.append(asyncio.create_task(self._keep_head_mark(), name="head-mark"))
        self.disk_usage.start()
        if self.settings.storage.retention_days > 0:  # docs/admin-guide.md, "Retention"
            retention = Retention(
                self.ledger, self.settings.storage.database_path, self.blobs.root, self.settings.storage.retention_days
            )
            self.background.append(asyncio.create_task(prune_hourly(retention), name="retention"))
        await self._bootstrap_admin()
        if self.ledger.views.half_life_s != self.settings.fairshare.half_life_s:  # the fold decays by recorded facts
            await self.ledger.write(commands.set_half_life(self.settings.fairshare.half_life_s))
        self.background.append(asyncio.create_task(self.token_usage.run(), name="token-usage"))
        if self.settings.sandbox.mode == "none":  # said at every start, and shown by /readyz and /api/nodes
            log.warning("sandbox.disabled", warning=DISABLED_WARNING)
        if not self.settings.sandbox.cgroups and self.settings.slurm is None:
            log.warning("cgroups.disabled", warning=CGROUPS_DISABLED_WARNING)
        if self.settings.slurm is not None:
            await self._start_slurm(self.settings.slurm)
        elif self.settings.ssh.node_specs():
            # Imported only when used (asyncssh and its crypto are a fifth of the server's imports):
            # a local-only server answers /livez that much sooner after its start.
            from executors.ssh.nodes import start_ssh_nodes

            fleet = await start_ssh_nodes(self.services)
            self.runners.update(fleet.runners)
            self.background.extend(fleet.tasks)
            self.on_stop.append(fleet.close)
        else:
            await self._start_local_node()
        await self._retire_absent_nodes()
        self.dispatcher.reattach()
        self.background.append(
            asyncio.create_task(
                sweep(self.ledger.views, self.runners, Path(self.settings.storage.jobs_dir) / "live"), name="sweep"
            )
        )
        self.dispatcher.start()
        review = start_reviews(self.services)
        if review is not None:
            self.background.append(review)
        self.started = True

    def _open_ledger(self) -> Ledger[Views]:
        self.blobs.sweep_temporary()
        self.reserve.ensure()  # before the first write: the room a full disk will give back
        return open_ledger(
            self.settings.storage.database_path,
            snapshot_every=self.settings.reads.snapshot_every,
            finished_cached=self.settings.reads.finished_jobs_cached,
            reserve=self.reserve,
        )

    def dispatch_hold(self) -> str | None:
        """Why no job starts now: the ledger's disk below DISK_FREE_FLOOR_BYTES (jobs' files would take the rest)."""
        return dispatch_hold(self.settings.storage.database_path, self.settings.storage.disk_free_floor_bytes)

    def disk_state(self) -> dict[str, object]:
        """What /readyz says of the ledger's disk."""
        return {
            "writable": self.ledger.writable,
            "free_bytes": free_bytes(self.settings.storage.database_path),
            "last_write_error": self.ledger.last_write_error,
            "reserve_held": self.reserve.held,
            "dispatch_held": self.dispatch_hold(),
        }

    async def stop(self) -> None:
        """Stop watching jobs and close the ledger; jobs keep running and are re-attached next start."""
        if not self._opened:
            return
        self.backfill_stop.set()  # a thread cannot be cancelled: it stops at its next chunk
        self.disk_usage.stop()
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
        await asyncio.to_thread(self._mark_head, None)  # the head as the server leaves it
        if self.replica is not None:  # after the ledger's last write, so the replica holds it too
            await self.replica.close()

    def _mark_head(self, last: integrity.HeadMark | None) -> integrity.HeadMark | None:
        """Record the durable head beside the ledger (``ledger.integrity``); a failed write is retried next time."""
        conn = connect(self.settings.storage.database_path, readonly=True)
        try:
            return integrity.record_head(self.settings.storage.database_path, conn, last)
        except (OSError, apsw.Error) as e:
            if str(e) != self._mark_error:  # once per kind of failure, not every second of a full disk
                log.warning("ledger.head_mark_failed", error=str(e))
            self._mark_error = str(e)
            return None
        finally:
            conn.close()

    async def _keep_head_mark(self) -> None:
        last: integrity.HeadMark | None = None
        while True:
            last = await asyncio.to_thread(self._mark_head, last)
            await asyncio.sleep(HEAD_MARK_S)

    async def _retire_absent_nodes(self) -> None:
        """Nodes of an earlier configuration (e.g. ``local`` before SSH nodes were set) would stay idle
        forever and have jobs planned onto them: a ``node.retired`` event takes them out."""
        for name, node in list(self.ledger.views.nodes.items()):
            if name not in self.runners and not node.retired:
                await self.ledger.write(commands.retire_node(name))
                log.info("node.retired", node=name)

    async def _start_slurm(self, slurm: SlurmSettings) -> None:
        """A [slurm] table: jobs go to the cluster; no local runner, no SSH nodes."""
        from executors.slurm.cluster import start_slurm  # only when used, as the SSH nodes

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

    def has_cpu_slots(self) -> bool:
        """Some node of ours has slots without GPUs (``gpus: 0`` jobs run there)."""
        nodes = list(self.ledger.views.nodes.values())
        return any(not n.has_gpus and not n.retired for n in nodes if n.name in self.runners)

    def largest_node_memory(self) -> int | None:
        """The most memory one job may ask for; None where a node's is not known here (the wrapper
        then holds the job to its node's share)."""
        if self.slurm is not None:
            return None
        if LOCAL_NODE in self.runners:
            return local_memory_cap(self.settings.sandbox)
        caps = [spec.memory_bytes for spec in self.settings.ssh.node_specs()]
        return None if not caps or None in caps else max(c for c in caps if c is not None)

    async def _start_local_node(self) -> None:
        gpus = local_gpus()
        slots = self.settings.runner.local_slots or len(gpus) or 1
        gpu_count = len(gpus) if self.settings.runner.local_gpus is None else self.settings.runner.local_gpus
        await self.ledger.write(
            commands.register_node(
                # GPUs as nvidia-smi lists them: none on a machine without a driver (CPU-only slots)
                NodeRegistered(
                    name=LOCAL_NODE, host="localhost", port=0, user="", slots=slots, kind="local", gpus=gpu_count
                )
            )
        )
        private = [
            self.settings.storage.jobs_dir,
            self.settings.storage.database_path,
            self.settings.storage.log_file,
            ".",
        ]
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
            return sandbox_spec(self.settings.sandbox, slots[0], readonly_paths=readonly, gpus=bound)

        transport = LocalTransport(LOCAL_NODE, python=sys.executable)
        self.runners[LOCAL_NODE] = NodeRunner(
            node=LOCAL_NODE,
            transport=transport,
            ledger=self.ledger,
            blobs=self.blobs,
            settings=self.settings,
            remote_root=self.local_root,
            env_for_slots=env_for_slots,
            sandbox_for_slots=sandbox_for_slots,
            node_memory=local_memory_cap(self.settings.sandbox),
        )
        await self._check_local_sandbox(transport)
        log.info("node.local", slots=slots, gpus=len(gpus), sandbox=self.settings.sandbox.mode)

    async def _check_local_sandbox(self, transport: LocalTransport) -> None:
        """No sandbox, no jobs: the local node is down with the reason, unless the admin turned it off."""
        if self.settings.sandbox.mode == "none":
            healthy, reason = True, "sandbox disabled"
        else:
            problem = await sandbox_problem(transport, self.local_root, self.settings.sandbox)
            if problem is not None:  # one line, on the console and in the log, naming the fix
                log.error("sandbox.unavailable", node=LOCAL_NODE, reason=problem, effect="node down, no job runs")
            healthy, reason = problem is None, f"no sandbox: {problem}" if problem else "sandbox ready"
        await self.ledger.write(commands.node_health(LOCAL_NODE, healthy=healthy, reason=reason))

    def _save_admin_token(self, secret: str) -> Path:
        """The first admin token, in a 0600 file next to the ledger (created with that mode, never wider)."""
        path = Path(self.settings.storage.database_path).resolve().parent / "admin-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        path.chmod(0o600)
        return path

    async def _bootstrap_admin(self) -> None:
        """First start of an empty ledger: issue an admin token and print it once (as Jupyter does)."""
        if self.ledger.views.tokens:
            return
        secret, issued = mint("admin", secret=None, days=self.settings.http.token_max_days, is_admin=True, by="system")
        await self.ledger.write(commands.issue_token(issued))
        saved = self._save_admin_token(secret)
        # Between JSON log lines when stderr is not a terminal: blank lines and a banner make it stand out.
        print(
            f"\n{'=' * 72}\n  gpuledger: first start, admin token for user 'admin' (shown once, valid "
            f"{self.settings.http.token_max_days} days):\n\n      {secret}\n\n"
            f"  Also saved to {saved} (readable by you only). In your shell:\n"
            f"      export GPULEDGER_TOKEN=$(cat {saved})\n{'=' * 72}\n",
            file=sys.stderr,
            flush=True,
        )
        log.info("token.bootstrap", token_id=issued.token_id, user_id="admin")
