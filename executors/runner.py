"""One node's job lifecycle over the wrapper protocol: upload, launch, follow, collect, finish.

Written once for every transport. An unreachable node is never read as a finished job: each step is
retried with backoff until ``NODE_LOST_AFTER``; only then does a started job end ``node_lost`` and an
unstarted one go back to the queue. Re-attaching after a server restart is the same code path:
``launch`` is idempotent on the node, so a job is never started twice.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import structlog

from executors import artifacts, environment
from executors import protocol as wp
from executors.errors import EnvSetupFailed, ExecutorError, JobFileUnreadable, NodeLost, RemoteCommandFailed
from executors.follow import LiveFiles, follow_job
from executors.gpu_watch import GpuWatch, Source, cancel_file_command, job_summary, wrapper_source
from executors.outcome import finished_event, save_results_file
from executors.resources import job_resources
from executors.retry import until_lost
from executors.seccomp import seccomp_program
from executors.transport import Transport
from executors.workspace import lay_out
from ledger.domain.arrays import array_env
from ledger.domain.artifact_quota import quota_left
from ledger.domain.errors import DomainError, LedgerUnavailable
from ledger.domain.events import Blob, JobArtifactsStored, JobEnvFailed, JobEnvReady, JobFinished
from ledger.domain.gpu import GpuSample
from ledger.domain.jobs import JobState
from ledger.store import commands
from ledger.store.blobs import BlobStore
from ledger.store.gpu_series import GpuSeries
from ledger.store.settings import Settings
from ledger.store.store import Write
from ledger.store.writer import Ledger
from projections.views import Views

log = structlog.get_logger()
T = TypeVar("T")
RESULTS_NAME = "results.jsonl"
PARAMS_NAME = "params.json"  # a sweep task's parameters, beside its solution
WRITE_RETRY_S = 2.0  # a job's outcome refused by a full disk is written again this often until it lands
FENCE_RETRY_S = (2.0, 15.0)  # first and longest wait between tries to kill a lost job on its node


def gpu_environment(slots: list[int]) -> dict[str, str]:
    """A job holding these slots of a GPU node sees exactly those GPUs."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(slot) for slot in slots)}


def no_gpu_environment(slots: list[int]) -> dict[str, str]:
    return {}


class NodeRunner:
    """Runs the jobs dispatched to one node (as many at once as it has slots)."""

    def __init__(
        self,
        *,
        node: str,
        transport: Transport,
        ledger: Ledger[Views],
        blobs: BlobStore,
        settings: Settings,
        remote_root: str,
        env_for_slots: Callable[[list[int]], dict[str, str]],
        sandbox_for_slots: Callable[[list[int]], wp.SandboxSpec],
        after_job: Callable[[], Awaitable[None]] | None = None,
        restart_container: str | None = None,
        node_memory: int | None = None,
        gpu_sampler: Callable[[list[int]], list[GpuSample]] | None = None,
    ) -> None:
        self.node, self.transport, self.ledger, self.blobs = node, transport, ledger, blobs
        self.settings = settings
        self.remote_root = remote_root
        self.env_for_slots = env_for_slots
        self.sandbox_for_slots = sandbox_for_slots
        self.after_job = after_job
        self.restart_container = restart_container
        self.node_memory = node_memory  # what the node gives its jobs in all (None: the wrapper's share)
        self.live_root = Path(settings.storage.jobs_dir) / "live"
        # Samples a job's slots in this process (the local runner's NVML); None: the wrapper samples.
        self.gpu_sampler = gpu_sampler
        self.gpu_series = GpuSeries(settings.storage.jobs_dir, settings.gpu.series_points)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Killing jobs lost with their node, by attempt. Their slots are held by the ledger (the node's
        # ``node.fence_required``) until ``node.fenced``, so the hold outlives a server restart.
        self.reapers: dict[str, asyncio.Task[None]] = {}

    def fenced_slots(self) -> set[int]:
        """Slots of lost jobs not yet confirmed dead on the node: they take no other job, however long
        the node was away (the ledger's word, so a restart keeps them)."""
        state = self.ledger.views.nodes.get(self.node)
        return state.fenced_slots if state is not None else set()

    def resume_fences(self) -> None:
        """After a restart: go on killing the lost attempts the ledger still holds slots for."""
        state = self.ledger.views.nodes.get(self.node)
        for fence in state.fences if state is not None else ():
            self._reap(fence.attempt_key)

    def workdir(self, attempt_key: str) -> str:
        """An attempt's control directory (the wrapper's files); the job itself sees only ``work/`` in it.
        ``attempt_key``: the job id for a first attempt, ``<job id>.<n>`` for a retry (``JobState.attempt_key``)."""
        return f"{self.remote_root.rstrip('/')}/jobs/{attempt_key}"

    def attach(self, job_id: str, *, fresh: bool = False) -> None:
        """Own a dispatched job: start it, or pick it up where it is (after a restart).

        ``fresh``: the dispatcher just dispatched it, so there is nothing on the node to ask about
        (launch is idempotent anyway) and the ``status`` round trip is skipped.
        """
        # Keyed by attempt: a retry may come back to this node while the last attempt's task cleans up.
        key = self.ledger.views.jobs[job_id].attempt_key
        if key in self.tasks:
            return
        task = asyncio.create_task(self._run(job_id, fresh=fresh), name=f"job-{key}")
        self.tasks[key] = task
        task.add_done_callback(lambda _: self.tasks.pop(key, None))

    async def stop(self) -> None:
        """Stop watching (server shutdown): the jobs themselves keep running on the node."""
        pending = [*self.tasks.values(), *self.reapers.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self, job_id: str, *, fresh: bool = False) -> None:
        job = self.ledger.views.jobs[job_id]
        bound = log.bind(job_id=job_id, user_id=job.user_id, node=self.node, attempt=job.attempt)
        uploaded = asyncio.Event()  # the cancel watcher waits for it: the wrapper must be there to ask
        watcher = asyncio.create_task(self._watch_cancel(job_id, self.workdir(job.attempt_key), uploaded))
        gpus = self._watch_gpus(job) if job.charged_gpus > 0 else None
        try:
            await self._attempt(job, bound, uploaded, fresh=fresh)
        except NodeLost:
            await self._node_lost(job_id, bound)
        except asyncio.CancelledError:
            raise
        except ExecutorError as e:  # e.g. a changed host key: retrying cannot help; another node may
            bound.warning("job.node_refused", error=str(e))
            await self._give_back(job_id, str(e))
        except Exception as e:  # a bug or an unexpected refusal must not leave the job pending forever
            bound.exception("job.runner_failed")
            await self._finish(
                JobFinished(
                    job_id=job_id,
                    status="failed",
                    reason="dispatch_failed",
                    attempt=job.attempt,
                    message=f"runner error: {e}",
                )
            )
        finally:
            watcher.cancel()
            if gpus is not None:
                gpus.cancel()
        if self.after_job is not None:
            await self.after_job()

    async def _attempt(
        self,
        job: JobState,
        bound: structlog.typing.FilteringBoundLogger,
        uploaded: asyncio.Event,
        *,
        fresh: bool = False,
    ) -> None:
        workdir = self.workdir(job.attempt_key)
        state = None if fresh else await self._retry(lambda: self._status(workdir))
        if state is None and self.ledger.views.jobs[job.job_id].started_at is not None:
            # It ran, and its files are gone (removed after a failed finish write): never run it again.
            gone = "the job's files on the node are gone; its outcome was never recorded"
            await self._end(job, "failed", "lost", gone)
            return
        if state is None or state.state == "not_started":
            if self.ledger.views.jobs[job.job_id].cancel_requested:
                await self._end(job, "cancelled", "cancelled", "cancelled before it started")
                return
            try:
                ready = await self._retry(lambda: self._upload(job, workdir))
            except EnvSetupFailed as e:
                await self._setup_failed(job, workdir, e)
                return
            if ready is not None:
                await self._env_ready(job, ready)
        # From here a cancel reaches the wrapper: before the launch it claims the job so it never runs.
        uploaded.set()
        live = LiveFiles(self.live_root / job.attempt_key, cap=self.settings.runner.running_output_cap)
        status = await follow_job(
            self.transport,
            live,
            workdir,
            lambda started: self._started(job, started),
            lost_after_s=self.settings.runner.node_lost_after,
        )
        await self._collect(job, workdir, status)
        bound.info("job.collected", reason=self.ledger.views.jobs[job.job_id].reason)

    # --- steps ---------------------------------------------------------------------------------

    async def _status(self, workdir: str) -> wp.WrapperState | None:
        code, out, _ = await self.transport.run(
            f"test -f {shlex.quote(workdir + '/' + wp.WRAPPER_NAME)} || exit 9; "
            + wp.status_command(self.transport.python, workdir),
            timeout=30,
        )
        if code == 9:
            return None
        if code != 0:
            raise RemoteCommandFailed("status", code, out)
        return wp.decode_wrapper_state(out.strip().splitlines()[-1])

    async def _upload(self, job: JobState, workdir: str) -> environment.EnvReady | None:
        """The job's files, its declared environment made ready (None: none declared), then its spec."""
        job_dir = f"{workdir}/{wp.WORK_NAME}"
        results = f"{job_dir}/{RESULTS_NAME}"
        entry = f"{job_dir}/{job.entrypoint or wp.SOLUTION_NAME}"
        command = wp.render_job_command(
            self.settings.runner.command,
            solution=entry,
            competition_id=job.competition_id,
            results=results,
            workdir=job_dir,
            entrypoint=entry,
            args=job.args,
        )
        slots = job.held_slots
        # The job's whole environment: nothing of the server's, whatever its names (see the wrapper).
        env = {
            **self.env_for_slots(slots),
            **self.settings.runner.env,
            "GPULEDGER_JOB_ID": job.job_id,
            "GPULEDGER_RESULTS": results,
            "GPULEDGER_SLOTS": ",".join(str(slot) for slot in slots),
            **array_env(job),  # an array's task: its array, index and (a sweep's) parameters
        }
        sandbox = self.sandbox_for_slots(slots)
        await lay_out(self.transport, self.blobs, self.ledger.views, job, job_dir)
        ready = None
        if environment.declares(job):
            ready = await environment.prepare(
                self.transport, self.settings.env, self.remote_root, workdir, job.attempt_key
            )
            env.update(environment.job_env(ready))
            sandbox = environment.with_venv(sandbox, ready)
        limit = job.expected_time_s * self.settings.runner.max_job_timeout_multiplier
        spec = wp.job_spec_bytes(
            command,
            limit,
            self.settings.runner.cancel_grace_s,
            env,
            sandbox,
            self.resources(job),
            max_disk_bytes=self.settings.runner.max_disk,
            max_output_bytes=self.settings.runner.running_output_cap,
            gpu_sample_s=self.settings.gpu.sample_s if self.gpu_sampler is None and job.charged_gpus else 0.0,
        )
        files = {wp.WRAPPER_NAME: wp.WRAPPER_SOURCE, wp.SECCOMP_NAME: seccomp_program(), wp.JOB_SPEC_NAME: spec}
        if job.params is not None:  # a sweep's task: its parameters beside its code
            await self.transport.put_files(job_dir, {PARAMS_NAME: json.dumps(job.params).encode()})
        # The wrapper last: until it is there, a restart finds nothing launched and uploads again.
        await self.transport.put_files(workdir, files)
        return ready

    async def _env_ready(self, job: JobState, ready: environment.EnvReady) -> None:
        event = JobEnvReady(
            job_id=job.job_id, digest=ready.digest, hit=ready.hit, seconds=ready.seconds, attempt=job.attempt
        )
        await self._write(commands.env_ready(event, node=self.node))

    async def _setup_failed(self, job: JobState, workdir: str, failure: EnvSetupFailed) -> None:
        """The set-up's output (the attempt's stderr so far) is the failed job's log; its time is charged."""
        fetched = await self._retry(
            lambda: self.transport.fetch(f"{workdir}/stderr", self.settings.runner.max_output_bytes)
        )
        data, cut = fetched if fetched is not None else (b"", False)
        stderr = await asyncio.to_thread(self.blobs.put, data, truncated=cut)
        finished = JobFinished(
            job_id=job.job_id,
            status="failed",
            reason="env_setup_failed",
            attempt=job.attempt,
            stderr=stderr,
            message=str(failure),
        )
        spent = JobEnvFailed(job_id=job.job_id, seconds=failure.seconds, digest=failure.digest, attempt=job.attempt)
        await self._finish(finished, env_failed=spent)
        await self._remove_workdir(workdir)

    def resources(self, job: JobState) -> wp.Resources:
        node = self.ledger.views.nodes.get(self.node)
        slots = node.slots if node is not None else len(job.held_slots)
        return job_resources(self.settings.sandbox, job, node_slots=slots, node_memory=self.node_memory)

    async def _started(self, job: JobState, started: wp.Started) -> None:
        """The wrapper started the job (or, re-attached, had started it): record it once."""
        if self.ledger.views.jobs[job.job_id].started_at is None:
            await self._write(
                commands.start_job(
                    job.job_id,
                    node=self.node,
                    attempt=job.attempt,
                    pid=started.pid,
                    pgid=started.pgid,
                    started_at_node=started.started_at.isoformat(),
                )
            )
            log.info("job.started", job_id=job.job_id, user_id=job.user_id, node=self.node, pgid=started.pgid)

    async def _collect(self, job: JobState, workdir: str, status: wp.ExitStatus) -> None:
        try:
            finished = await self._ending(job, workdir, status)
            kept = await self._retry(
                lambda: artifacts.collect(
                    self.transport,
                    self.blobs,
                    job,
                    f"{workdir}/{wp.WORK_NAME}",
                    self.settings.runner.artifact_max_bytes,
                    self._quota(job),
                )
            )
            await self._finish(finished, kept)
        except Exception:
            # The finish write failed (a full disk, say): the job's files go all the same, they may be
            # what filled it. The live copy stays (the sweep takes it once the job is finished).
            await self._remove_workdir(workdir)
            raise
        await self._remove_workdir(workdir)
        await self._drop_live(job.attempt_key)

    def _quota(self, job: JobState) -> artifacts.Quota | None:
        """The owner's artifact quota and what the published views say is left of it (None: no quota);
        the finish step checks again against the writer's state."""
        quota = self.settings.runner.artifact_quota_bytes
        left = quota_left(self.ledger.views.users.get(job.user_id), quota)
        return None if left is None else artifacts.Quota(bytes=quota, left=left)

    async def _ending(self, job: JobState, workdir: str, status: wp.ExitStatus) -> JobFinished:
        """The attempt's job.finished: output and results stored, the outcome read from the status."""
        live = self.live_root / job.attempt_key
        cap = self.settings.runner.max_output_bytes
        # Blob writes end in fsync: off the event loop, and the two streams side by side.
        stdout, stderr, (fetched, unreadable) = await asyncio.gather(
            asyncio.to_thread(self._store_capped, live / "stdout", cap),
            asyncio.to_thread(self._store_capped, live / "stderr", cap),
            self._fetch_results(workdir),
        )
        results = results_file = None
        if fetched is not None:
            results, saved = await asyncio.to_thread(self._store_results, job, fetched)
            results_file = str(saved)
        return finished_event(
            self.ledger.views.jobs[job.job_id],
            status,
            stdout=stdout,
            stderr=stderr,
            results=results,
            results_file=results_file,
            results_unreadable=unreadable,
        )

    async def _fetch_results(self, workdir: str) -> tuple[tuple[bytes, bool] | None, str | None]:
        """(the results file and whether it was cut, or None; why it could not be read, or None)."""
        path = f"{workdir}/{wp.WORK_NAME}/{RESULTS_NAME}"
        limit = self.settings.runner.max_results_bytes
        try:
            fetched = await self._retry(lambda: self.transport.fetch(path, limit))
        except JobFileUnreadable as e:
            return None, e.reason
        if fetched is not None and fetched[1]:  # a cut JSONL file would be read as other results
            return None, f"larger than MAX_RESULTS_BYTES ({limit} bytes)"
        return fetched, None

    async def _remove_workdir(self, workdir: str) -> None:
        try:
            await self.transport.remove_tree(workdir)
        except (ExecutorError, OSError) as e:  # the start-up sweep tries again
            log.warning("job.cleanup_failed", node=self.node, workdir=workdir, error=str(e))

    async def _drop_live(self, attempt_key: str) -> None:
        """The live copy of an attempt's output, once the blob store holds it."""
        await asyncio.to_thread(shutil.rmtree, self.live_root / attempt_key, ignore_errors=True)

    def _store_capped(self, path: Path, cap: int) -> Blob:
        return self.blobs.put(_read_capped(path, cap), truncated=_size(path) > cap)

    def _store_results(self, job: JobState, fetched: tuple[bytes, bool]) -> tuple[Blob, Path]:
        blob = self.blobs.put(fetched[0], truncated=fetched[1])
        return blob, save_results_file(Path(self.settings.storage.jobs_dir) / "results", job, fetched[0])

    async def _end(self, job: JobState, status: Literal["failed", "cancelled"], reason: str, message: str) -> None:
        """End a job that never ran (or whose run left nothing to read) with a reason and the server's word."""
        await self._finish(
            JobFinished(job_id=job.job_id, status=status, reason=reason, attempt=job.attempt, message=message)
        )

    async def _finish(
        self, finished: JobFinished, kept: JobArtifactsStored | None = None, *, env_failed: JobEnvFailed | None = None
    ) -> None:
        job = self.ledger.views.jobs[finished.job_id]
        gpu = await asyncio.to_thread(job_summary, self.gpu_series, job, int(time.time() * 1e6))
        await self._write(
            commands.finish_job(
                finished,
                node=self.node,
                restart_container=self.restart_container,
                gpu=gpu,
                idle_charge_factor=self.settings.gpu.idle_charge_factor,
                artifacts=kept,
                artifact_quota=self.settings.runner.artifact_quota_bytes,
                env_failed=env_failed,
            )
        )

    def _watch_gpus(self, job: JobState) -> asyncio.Task[None]:
        """Sample the attempt's GPUs while it runs (ended with the attempt's task)."""
        workdir = self.workdir(job.attempt_key)
        source: Source = wrapper_source(self.transport, workdir)
        if self.gpu_sampler is not None:
            sampler, slots = self.gpu_sampler, job.held_slots
            source = lambda: asyncio.to_thread(sampler, slots)  # noqa: E731 - a one-line source
        watch = GpuWatch(
            job=job,
            node=self.node,
            source=source,
            ledger=self.ledger,
            series=self.gpu_series,
            settings=self.settings.gpu,
            write=self._write,
            stop_job=lambda: self._retry(lambda: self.transport.run(cancel_file_command(workdir), timeout=30)),
        )
        return asyncio.create_task(watch.run(), name=f"gpu-{job.attempt_key}")

    async def _node_lost(self, job_id: str, bound: structlog.typing.FilteringBoundLogger) -> None:
        job = self.ledger.views.jobs[job_id]
        if job.is_terminal:
            return
        bound.warning("job.node_lost", started=job.started_at is not None)
        if job.started_at is None:
            await self._write(commands.lose_job(job_id, node=self.node, attempt=job.attempt))
        else:
            live = self.live_root / job.attempt_key
            cap = self.settings.runner.max_output_bytes
            stdout, stderr = await asyncio.gather(
                asyncio.to_thread(self._store_capped, live / "stdout", cap),
                asyncio.to_thread(self._store_capped, live / "stderr", cap),
            )
            message = f"node {self.node} unreachable for more than {self.settings.runner.node_lost_after:g} s"
            finished = JobFinished(
                job_id=job_id,
                status="failed",
                reason="node_lost",
                attempt=job.attempt,
                stdout=stdout,
                stderr=stderr,
                message=message,
            )
            await self._write(
                commands.lose_job(
                    job_id,
                    node=self.node,
                    attempt=job.attempt,
                    finished=finished,
                    restart_container=self.restart_container,
                )
            )
            await self._drop_live(job.attempt_key)
        # The job may still run on the node: when it answers again, kill what is left and clean up
        # (this attempt's workdir only: a retry of the job has its own).
        self._reap(job.attempt_key)

    def _reap(self, attempt_key: str) -> None:
        if attempt_key in self.reapers:
            return
        reaper = asyncio.create_task(self._fence(attempt_key), name=f"reap-{attempt_key}")
        self.reapers[attempt_key] = reaper
        reaper.add_done_callback(lambda _: self.reapers.pop(attempt_key, None))

    async def _fence(self, attempt_key: str) -> None:
        """Kill a lost job on its node (the wrapper's cancel, confirmed by its exit status), then free
        its slots and remove its files. Tried (2 s apart, backing off to 15 s) until the node confirms."""
        workdir = self.workdir(attempt_key)
        quoted = shlex.quote(workdir)
        # No workdir: nothing was ever launched there, so nothing runs.
        command = f"test -d {quoted} || exit 0; " + wp.cancel_command(self.transport.python, workdir)
        wait_s = FENCE_RETRY_S[0]
        while True:
            try:
                code, _, err = await self.transport.run(command, timeout=self.settings.runner.cancel_grace_s + 30)
            except ExecutorError as e:
                code, err = -1, str(e).encode()
            if code == 0:
                break
            log.info("job.fence_pending", node=self.node, attempt=attempt_key, code=code, error=err[-200:])
            await asyncio.sleep(wait_s)
            wait_s = min(2 * wait_s, FENCE_RETRY_S[1])
        log.info("job.fenced", node=self.node, attempt=attempt_key)
        await self._write(commands.fenced(self.node, attempt_key))
        await self._remove_workdir(workdir)

    async def _give_back(self, job_id: str, reason: str) -> None:
        job = self.ledger.views.jobs[job_id]
        if job.is_terminal:
            return
        if job.started_at is None:
            await self._write(commands.requeue_job(job_id, node=self.node, attempt=job.attempt, reason=reason))
        else:
            await self._finish(
                JobFinished(
                    job_id=job_id, status="failed", reason="dispatch_failed", attempt=job.attempt, message=reason
                )
            )

    async def _watch_cancel(self, job_id: str, workdir: str, uploaded: asyncio.Event) -> None:
        """When a cancel is requested, have the wrapper kill the job's process group (and confirm)."""
        while True:
            seen = self.ledger.head
            if self.ledger.views.jobs[job_id].cancel_requested:
                break
            await self.ledger.wait_beyond(seen)
        await uploaded.wait()
        await self._retry(
            lambda: self.transport.run(
                wp.cancel_command(self.transport.python, workdir), timeout=self.settings.runner.cancel_grace_s + 30
            )
        )

    async def _write(self, write: Write) -> None:
        while True:
            try:
                await self.ledger.write(write)
            except DomainError as e:  # e.g. already finished by a racing path: the ledger stays right
                log.info("job.write_refused", node=self.node, error=str(e))
            except LedgerUnavailable as e:  # the disk refused it: the outcome waits for room, never lost
                log.warning("job.write_waiting", node=self.node, error=str(e))
                await asyncio.sleep(WRITE_RETRY_S)
                continue
            return

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """A step of the job's lifecycle, retried while the node is unreachable, until NODE_LOST_AFTER."""
        return await until_lost(step, node=self.node, lost_after_s=self.settings.runner.node_lost_after)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_capped(path: Path, cap: int) -> bytes:
    if not path.exists():
        return b""
    with path.open("rb") as handle:
        return handle.read(cap)
