"""Everything the server runs besides HTTP: the ledger, the node runners, the dispatcher, reviews.

Start order: ledger (migrations, projections caught up, in a worker thread: the server is already
listening and answers ``/livez``), nodes registered from settings, runners, re-attach of jobs the
ledger shows on nodes, then the dispatcher. Until ``ready`` every other endpoint answers 503.
Stop leaves jobs running.

This is the composition root: only ``api.app`` imports it. Handlers get its parts as the narrow ports
of ``api.ports`` (the providers in ``api.context`` hand them out), never the runtime itself.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw
import structlog

from api.admintoken import bootstrap_admin
from api.diskuse import DiskUsage, DiskUse
from api.output import JobFiles
from api.ports import Cluster, EventLog, Intake, LedgerWriter, ServerState
from api.pruner import Retention, prune_hourly
from executors.dispatcher import Dispatcher
from executors.interface import Executor
from executors.notify.sender import Sender
from executors.registry import start_executor
from executors.runner import NodeRunner
from executors.sandbox import CGROUPS_DISABLED_WARNING, DISABLED_WARNING
from executors.scan.review import start_reviews
from executors.services import Services
from executors.sweep import sweep
from ledger.domain.errors import StoreError
from ledger.store import commands, integrity
from ledger.store.blobs import BlobStore
from ledger.store.disk import DiskReserve, dispatch_hold, free_bytes
from ledger.store.schema import connect
from ledger.store.settings import Settings
from ledger.store.writer import Ledger
from projections import backfill
from projections.live import open_ledger
from projections.plan import PlanCache
from projections.token_usage import TokenUsage
from projections.views import Views

if TYPE_CHECKING:
    from executors.replica import Replicator

log = structlog.get_logger()
HEAD_MARK_S = 1.0  # how often the durable head is recorded beside the ledger (ledger.store.integrity)


class Runtime:
    # Set by start(); nothing reads them before ``started`` (the API answers 503 until then).
    ledger: Ledger[Views]
    services: Services
    dispatcher: Dispatcher
    executor: Executor
    intake: Intake

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
        self._mark_error = ""
        self.reserve = DiskReserve(f"{settings.storage.database_path}.reserve", settings.storage.ledger_reserve_bytes)
        self.replica: Replicator | None = None
        self.disk_usage = DiskUsage(
            settings.storage.database_path, settings.storage.jobs_dir
        )  # /metrics, the dashboard
        self.output = JobFiles(self.blobs, settings.storage.jobs_dir, settings.runner.inline_output_bytes)

    # --- the ports handlers are given (``api.ports``, through ``api.context``) ---------------------

    @property
    def writer(self) -> LedgerWriter:
        return self.ledger

    @property
    def events(self) -> EventLog:
        return self.ledger

    @property
    def server(self) -> ServerState:
        return self

    @property
    def cluster(self) -> Cluster:
        return self

    def readiness(self) -> dict[str, bool]:
        """The checks /readyz names, once started."""
        return {
            "ledger_writable": self.ledger.writable,
            "projections_caught_up": self.ledger.views.position >= self.ledger.head,
            "executors_started": self.started,
        }

    def replica_state(self) -> dict[str, Any] | None:
        """The replica's state (reported, never a reason to refuse work); None without one."""
        return None if self.replica is None else self.replica.describe()

    def disk_use(self) -> DiskUse | None:
        """What the jobs and the ledger take on disk: cached, measured in a thread."""
        return self.disk_usage.latest

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
        self.intake = Intake(self.settings, self.ledger, self.blobs, self, self.token_usage)
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
        storage = self.settings.storage
        if storage.retention_days > 0 or storage.artifact_retention_s > 0:  # docs/admin-guide.md, "Retention"
            retention = Retention(
                self.ledger,
                storage.database_path,
                self.blobs.root,
                storage.retention_days,
                storage.artifact_retention_s,
            )
            self.background.append(asyncio.create_task(prune_hourly(retention), name="retention"))
        await bootstrap_admin(self.ledger, self.settings)
        if self.ledger.views.half_life_s != self.settings.fairshare.half_life_s:  # the fold decays by recorded facts
            await self.ledger.write(commands.set_half_life(self.settings.fairshare.half_life_s))
        self.background.append(asyncio.create_task(self.token_usage.run(), name="token-usage"))
        notifier = Sender(self.ledger, self.settings.storage.database_path, self.settings.notify)
        self.background.append(asyncio.create_task(notifier.run(), name="notify"))  # docs: "Notifications"
        self.on_stop.append(notifier.close)
        if self.settings.sandbox.mode == "none":  # said at every start, and shown by /readyz and /api/nodes
            log.warning("sandbox.disabled", warning=DISABLED_WARNING)
        self.executor = await start_executor(self.services)  # the one the settings choose: executors/registry.py
        if not self.settings.sandbox.cgroups and self.executor.uses_job_cgroups:
            log.warning("cgroups.disabled", warning=CGROUPS_DISABLED_WARNING)
        self.runners.update(self.executor.runners)
        self.plans.external = self.executor.pending_board
        self.on_stop.append(self.executor.close)
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
        """Record the durable head beside the ledger (``ledger.store.integrity``); a failed write is retried later."""
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

    def cluster_info(self) -> dict[str, object] | None:
        """The executor's cluster as its own scheduler shows it (the wire calls it ``slurm``)."""
        return self.executor.describe()

    def largest_node_gpus(self) -> int:
        """The most GPUs one job may ask for: a job never spans nodes."""
        if (largest := self.executor.largest_job_gpus()) is not None:
            return largest
        sizes = [n.slots for n in list(self.ledger.views.nodes.values()) if n.name in self.runners]
        return max(sizes, default=1)

    def has_cpu_slots(self) -> bool:
        """Some node of ours has slots without GPUs (``gpus: 0`` jobs run there)."""
        nodes = list(self.ledger.views.nodes.values())
        return any(not n.has_gpus and not n.retired for n in nodes if n.name in self.runners)

    def largest_node_memory(self) -> int | None:
        """The most memory one job may ask for; None where a node's is not known here (the wrapper
        then holds the job to its node's share)."""
        return self.executor.largest_job_memory()
