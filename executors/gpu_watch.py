"""One running attempt's GPUs watched: samples into the series beside the ledger, the idle-GPU policy
over them, and the summary its end is recorded with.

Samples come from a source: NVML in the server's process (the local runner, ``executors.nvml``) or
the wrapper's own ``nvidia-smi`` samples (SSH nodes and Slurm), fetched from its ``gpu.json``. Each is
read every ``GPU_SAMPLE_S``; the idle verdict needs ``GPU_IDLE_MINUTES`` of samples seen by this
server, so after a restart the idle clock starts again (a verdict is never reached on a guess).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from executors import protocol as wp
from executors.errors import ExecutorError
from executors.transport import Transport
from ledger.domain.gpu import GpuSample, GpuSummary, idle_evidence, summarise
from ledger.domain.jobs import JobState
from ledger.store import commands
from ledger.store.gpu_series import GpuSeries
from ledger.store.settings.gpu import GpuSettings
from ledger.store.store import Write
from ledger.store.writer import Ledger
from projections.views import Views

log = structlog.get_logger()
Source = Callable[[], Awaitable[list[GpuSample]]]


class GpuFile(msgspec.Struct, frozen=True):
    """The wrapper's ``gpu.json``."""

    samples: list[GpuSample] = []


_gpu_file = msgspec.json.Decoder(GpuFile)
GPU_FILE_LIMIT = 1 << 20  # the wrapper keeps its last samples only: far below this


def wrapper_source(transport: Transport, workdir: str) -> Source:
    """The samples the wrapper's ``nvidia-smi`` took on the node (``gpu.json``); [] while it has none."""

    async def read() -> list[GpuSample]:
        try:
            fetched = await transport.fetch(f"{workdir}/{wp.GPU_NAME}", GPU_FILE_LIMIT)
            return [] if fetched is None else _gpu_file.decode(fetched[0]).samples
        except (ExecutorError, OSError, msgspec.DecodeError) as e:  # a gap in the series, not a failure
            log.info("gpu.sample_unread", node=transport.node, error=str(e))
            return []

    return read


def job_summary(series: GpuSeries, job: JobState, now_us: int) -> GpuSummary | None:
    """The attempt's summary from its stored samples (blocking: a file read); None without telemetry."""
    if job.started_at is None or job.charged_gpus <= 0:
        return None
    points = series.read(job.job_id, job.attempt)
    return summarise(points, gpus=job.charged_gpus, held_s=(now_us - job.started_at) / 1e6)


class GpuWatch:
    """Samples one attempt until cancelled (its end); writes the idle verdict and has the job stopped."""

    def __init__(
        self,
        *,
        job: JobState,
        node: str,
        source: Source,
        ledger: Ledger[Views],
        series: GpuSeries,
        settings: GpuSettings,
        write: Callable[[Write], Awaitable[None]],
        stop_job: Callable[[], Awaitable[object]],
    ) -> None:
        self.job_id, self.attempt, self.node = job.job_id, job.attempt, node
        self.source, self.ledger, self.series, self.settings = source, ledger, series, settings
        self.write, self.stop_job = write, stop_job
        self.seen: list[GpuSample] = []  # this server's samples of the attempt, for the idle verdict
        self.stopping = False

    async def run(self) -> None:
        await self._until_started()
        last = max((p.t for p in self.series.read(self.job_id, self.attempt)), default=0.0)
        while True:
            fresh = [s for s in await self.source() if s.t > last]
            if fresh:
                last = max(s.t for s in fresh)
                await asyncio.to_thread(self.series.append, self.job_id, self.attempt, fresh)
                self.seen = self._recent([*self.seen, *fresh])
            await self._judge()
            await asyncio.sleep(self.settings.sample_s)

    async def _until_started(self) -> None:
        while True:
            seen = self.ledger.head
            if self.ledger.views.jobs[self.job_id].started_at is not None:
                return
            await self.ledger.wait_beyond(seen)

    def _recent(self, samples: list[GpuSample]) -> list[GpuSample]:
        """What the verdict can need: the idle window and one sample before it."""
        if not samples:
            return samples
        since = samples[-1].t - self.settings.idle_minutes * 60 - 2 * self.settings.sample_s
        return [s for s in samples if s.t >= since]

    async def _judge(self) -> None:
        policy = self.settings.idle_policy
        job = self.ledger.views.jobs[self.job_id]
        if policy == "off" or job.is_terminal or job.attempt != self.attempt:
            return
        if job.gpu_idle is None:
            evidence = idle_evidence(self.seen, window_s=self.settings.idle_minutes * 60, below=self.settings.idle_util)
            if evidence is None:
                return
            log.warning("job.gpu_idle", job_id=self.job_id, node=self.node, action=policy)
            await self.write(
                commands.flag_gpu_idle(
                    self.job_id,
                    node=self.node,
                    attempt=self.attempt,
                    action=policy,
                    minutes=self.settings.idle_minutes,
                    below=self.settings.idle_util,
                    samples=evidence,
                )
            )
        # Also after a restart: a verdict to stop the job is carried out whoever wrote it.
        if self.ledger.views.jobs[self.job_id].gpu_idle in ("cancel", "requeue") and not self.stopping:
            self.stopping = True
            await self.stop_job()


def cancel_file_command(workdir: str) -> str:
    """The wrapper's daemon watches this file on the node (Slurm's too, on the shared filesystem)."""
    return f"touch {shlex.quote(workdir + '/' + wp.CANCEL_NAME)}"
