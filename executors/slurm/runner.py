"""A job's life in Slurm: the batch script, the one-time submit, following, cancel, the outcome.

The batch script runs the job through the same wrapper as every other executor (``run``: launch,
then follow until the status file is written), so outcome and sandbox rules are the same. The
workdir (under ``REMOTE_ROOT``) must be on a filesystem the login and compute nodes share: the
server reads only files there (output from byte offsets, started.json, status.json), never pids,
which mean nothing off the compute node.

Submitted once: the job name ``gpuledger-<job id>-<attempt>`` is looked up in squeue before every
sbatch but the first of a fresh dispatch, so a submit interrupted before its ``job.handed_off``
append (a crash, a timeout) is found again, not repeated.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import time
from typing import Protocol

import structlog

from executors import protocol as wp
from executors.errors import EnvSetupFailed
from executors.follow import LiveFiles
from executors.resources import job_resources
from executors.retry import until_done
from executors.runner import NodeRunner
from executors.slurm.client import SlurmClient, SlurmJob
from executors.slurm.errors import SlurmRefused
from executors.slurm.states import ACTIVE, outcome_of
from ledger.domain.events import JobFinished
from ledger.domain.jobs import JobState
from ledger.store import commands

log = structlog.get_logger()
JOB_NAME_PREFIX = "gpuledger-"
SCRIPT_NAME = "job.sbatch"
READ_CHUNK = 1 << 20
TERMINAL_CONFIRMATIONS = 3  # polls a job must look ended without a status file before Slurm's word counts
# A job whose wrapper ran but which Slurm no longer lists (the server was down past MinJobAge, right
# after sbatch): no id to record; its files decide, and without a status file it ends lost.
FORGOTTEN = ""
REQUEUE_STATES = frozenset({"PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})  # before the job started: try again


class SlurmView(Protocol):
    """What a runner needs of its cluster (``executors.slurm.cluster``)."""

    client: SlurmClient

    def job(self, slurm_id: str) -> SlurmJob | None: ...

    def knows_since(self, moment: float) -> bool: ...

    async def next_poll(self) -> None: ...

    async def find(self, name: str) -> str | None: ...


def job_name(job: JobState) -> str:
    return f"{JOB_NAME_PREFIX}{job.job_id}-{job.attempt}"


def job_of_name(name: str) -> str | None:
    if not name.startswith(JOB_NAME_PREFIX):
        return None
    job_id, _, attempt = name[len(JOB_NAME_PREFIX) :].rpartition("-")
    return job_id if job_id and attempt.isdigit() else None


# Run on the compute node before the wrapper: the GPUs Slurm allocated are known only there, and the
# job's environment is job.json's (the wrapper gives it nothing of its own), so they are added to it.
ALLOCATION_INTO_SPEC = (
    "import json, os, sys\n"
    "spec_path = sys.argv[1]\n"
    "with open(spec_path) as f:\n"
    "    spec = json.load(f)\n"
    "names = ('CUDA_VISIBLE_DEVICES', 'SLURM_JOB_ID')\n"
    "spec.setdefault('env', {}).update({n: os.environ[n] for n in names if n in os.environ})\n"
    "with open(spec_path + '.slurm', 'w') as f:\n"
    "    json.dump(spec, f)\n"
    "os.replace(spec_path + '.slurm', spec_path)\n"
)


def batch_script(python: str, workdir: str, job: JobState) -> bytes:
    run = wp.run_command(python, workdir, 0, 0)
    cancel = wp.cancel_command(python, workdir)
    allocation = shlex.join([python, "-I", "-S", "-c", ALLOCATION_INTO_SPEC, f"{workdir}/{wp.JOB_SPEC_NAME}"])
    return f"""#!/bin/bash
# gpuledger job {job.job_id}, attempt {job.attempt}: the wrapper launches the job and follows it to
# its end (its frames are not needed here: the server reads the workdir's files).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
test -e {shlex.quote(workdir + "/launched")} || {allocation}
# scancel or Slurm's time limit: have the wrapper end the job's process group and record it.
trap {shlex.quote(cancel + " >/dev/null 2>&1")} TERM
{run} >/dev/null &
wait $!
wait
""".encode()


def slurm_minutes(limit_s: float, grace_s: float) -> int:
    """``--time``: the wrapper's own limit plus its kill grace, rounded up, so the wrapper (which
    records a timeout like on every executor) acts before Slurm does."""
    return max(1, math.ceil((limit_s + grace_s + 60) / 60))


class SlurmRunner(NodeRunner):
    """The jobs handed to one Slurm cluster (the ledger sees it as one node)."""

    def __init__(self, *, cluster: SlurmView, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cluster = cluster

    def sbatch_options(self, job: JobState, workdir: str) -> list[str]:
        settings = self.settings
        assert settings.slurm is not None
        limit = job.expected_time_s * settings.runner.max_job_timeout_multiplier
        return [
            *settings.slurm.sbatch_options,
            f"--job-name={job_name(job)}",
            f"--comment=gpuledger job {job.job_id} attempt {job.attempt}",
            f"--chdir={workdir}",
            f"--output={workdir}/slurm.out",
            "--export=NONE",
            "--nodes=1",
            "--ntasks=1",
            f"--gres=gpu:{job.gpus}",
            f"--time={slurm_minutes(limit, settings.runner.cancel_grace_s)}",
            # Slurm's own cgroup confines the job (ConstrainRAMSpace); without an ask, its DefMemPerGPU.
            *([f"--mem={-(-job.memory // (1 << 20))}M"] if job.memory else []),
        ]

    def resources(self, job: JobState) -> wp.Resources:
        """Slurm makes the job's cgroup; the wrapper only sizes /tmp and /dev/shm from the memory."""
        return job_resources(self.settings.sandbox, job, node_slots=job.gpus, node_memory=None, cgroups=False)

    async def _attempt(
        self,
        job: JobState,
        bound: structlog.typing.FilteringBoundLogger,
        uploaded: asyncio.Event,
        *,
        fresh: bool = False,
    ) -> None:
        workdir = self.workdir(job.attempt_key)
        slurm_id = self.ledger.views.jobs[job.job_id].scheduler_id
        since = time.monotonic()
        if slurm_id is None:
            try:
                slurm_id = await self._hand_off(job, workdir, fresh=fresh)
            except SlurmRefused as e:
                await self._finish(_failed(job, "dispatch_failed", f"sbatch refused the job: {e}"))
                return
            except EnvSetupFailed as e:  # on the login host's side of the shared filesystem
                await self._setup_failed(job, workdir, e)
                return
            if slurm_id is None:
                return
        uploaded.set()
        bound.info("job.slurm", slurm_id=slurm_id)
        status = await self._follow_slurm(job, workdir, slurm_id, since)
        if status is not None:
            await self._collect(job, workdir, status)
            bound.info("job.collected", reason=self.ledger.views.jobs[job.job_id].reason)

    async def _hand_off(self, job: JobState, workdir: str, *, fresh: bool) -> str | None:
        """sbatch once (found by name first unless freshly dispatched); None if cancelled first."""
        name, script = job_name(job), f"{workdir}/{SCRIPT_NAME}"
        assert self.settings.slurm is not None
        python = self.settings.slurm.python
        look_first = not fresh

        async def submit() -> str | None:
            nonlocal look_first
            if look_first:
                found = await self.cluster.find(name)
                if found is not None:
                    log.info("job.slurm_found", job_id=job.job_id, slurm_id=found)
                    return found
                if await self.transport.fetch(f"{workdir}/launched", 1 << 10) is not None:
                    return FORGOTTEN  # it ran, and Slurm has forgotten it: follow its files, never resubmit
            if self.ledger.views.jobs[job.job_id].cancel_requested:
                return None
            ready = await self._upload(job, workdir)
            if ready is not None:
                await self._env_ready(job, ready)
            await self.transport.put_files(workdir, {SCRIPT_NAME: batch_script(python, workdir, job)})
            look_first = True  # a failed sbatch may still have submitted: look before trying again
            return await self.cluster.client.sbatch(script, self.sbatch_options(job, workdir))

        slurm_id = await until_done(submit)
        if slurm_id is None:
            await self._finish(_failed(job, "cancelled", "cancelled before it was handed to Slurm", "cancelled"))
            return None
        if slurm_id == FORGOTTEN:
            return slurm_id
        await self._write(
            commands.hand_off_job(
                job.job_id, node=self.node, attempt=job.attempt, scheduler="slurm", scheduler_id=slurm_id
            )
        )
        return slurm_id

    async def _follow_slurm(self, job: JobState, workdir: str, slurm_id: str, since: float) -> wp.ExitStatus | None:
        """Stream output and watch for the wrapper's status; None when Slurm's state ended the job."""
        live = LiveFiles(self.live_root / job.attempt_key)
        ended_polls = 0
        while True:
            await until_done(lambda: self._pump(workdir, live))
            started = await until_done(lambda: self.transport.fetch(f"{workdir}/{wp.STARTED_NAME}", 1 << 16))
            if started is not None:
                await self._started(job, wp.decode_started(started[0]))
            status = await until_done(lambda: self.transport.fetch(f"{workdir}/{wp.STATUS_NAME}", 1 << 16))
            if status is not None:
                await until_done(lambda: self._pump(workdir, live))  # the group is gone: this drain is complete
                return wp.decode_exit_status(status[0])
            seen = self.cluster.job(slurm_id)
            if self.cluster.knows_since(since) and (seen is None or seen.job_state not in ACTIVE):
                ended_polls += 1
                if ended_polls >= TERMINAL_CONFIRMATIONS:
                    await self._ended_in_slurm(job, seen)
                    return None
            else:
                ended_polls = 0
            await self.cluster.next_poll()

    async def _pump(self, workdir: str, live: LiveFiles) -> None:
        """Append what the job printed since our copies' sizes (resumable after any restart)."""
        for kind, offset in zip((wp.FrameKind.STDOUT, wp.FrameKind.STDERR), live.offsets(), strict=True):
            name = wp.STDOUT_NAME if kind == wp.FrameKind.STDOUT else wp.STDERR_NAME
            path = shlex.quote(f"{workdir}/{name}")
            while True:
                _, data, _ = await self.transport.run(
                    f"tail -c +{offset + 1} {path} 2>/dev/null | head -c {READ_CHUNK}", timeout=60
                )
                if not data:
                    break
                live.append(kind, data)
                offset += len(data)
                if len(data) < READ_CHUNK:
                    break

    async def _ended_in_slurm(self, job: JobState, seen: SlurmJob | None) -> None:
        """No status file and Slurm says the job is over: Slurm's state decides (states.OUTCOMES)."""
        current = self.ledger.views.jobs[job.job_id]
        state = None if seen is None else seen.job_state
        if current.started_at is None and state in REQUEUE_STATES and not current.cancel_requested:
            await self._write(commands.requeue_job(job.job_id, node=self.node, attempt=job.attempt, reason=str(state)))
            return
        outcome = outcome_of(state)
        live = self.live_root / job.attempt_key
        cap = self.settings.runner.max_output_bytes
        stdout, stderr = await asyncio.gather(
            asyncio.to_thread(self._store_capped, live / "stdout", cap),
            asyncio.to_thread(self._store_capped, live / "stderr", cap),
        )
        cancelled = current.cancel_requested or outcome.status == "cancelled"
        await self._finish(
            JobFinished(
                job_id=job.job_id,
                status="cancelled" if cancelled else outcome.status,
                reason="cancelled" if cancelled else outcome.reason,
                attempt=job.attempt,
                exit_code=seen.exit_code if seen is not None and not cancelled else None,
                stdout=stdout,
                stderr=stderr,
                message=f"{outcome.message} (Slurm job {current.scheduler_id}, state {state or 'unknown'})",
            )
        )

    async def _watch_cancel(self, job_id: str, workdir: str, uploaded: asyncio.Event) -> None:
        """Cancel: the wrapper's cancel file (it kills the job's group and records the end), then
        scancel, at once for a pending job, after the wrapper's grace for a running one."""
        while True:
            seen = self.ledger.head
            if self.ledger.views.jobs[job_id].cancel_requested:
                break
            await self.ledger.wait_beyond(seen)
        await uploaded.wait()
        await until_done(lambda: self.transport.run(f"touch {shlex.quote(workdir + '/' + wp.CANCEL_NAME)}", timeout=30))
        slurm_id = self.ledger.views.jobs[job_id].scheduler_id
        if slurm_id is None:
            return
        current = self.cluster.job(slurm_id)
        if current is not None and current.job_state != "PENDING":
            await asyncio.sleep(self.settings.runner.cancel_grace_s + 5)
        await until_done(lambda: self.cluster.client.cancel(slurm_id))


def _failed(job: JobState, reason: str, message: str, status: str = "failed") -> JobFinished:
    return JobFinished(
        job_id=job.job_id,
        status="cancelled" if status == "cancelled" else "failed",
        reason=reason,
        attempt=job.attempt,
        message=message,
    )
