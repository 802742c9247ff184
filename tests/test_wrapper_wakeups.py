"""The wrapper notices a job's end when it happens, not at its next poll (bench/sandbox.py times a job
up to its STATUS frame, so every tick of polling counts there)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wrapper_jobs import WRAPPER_SOURCE, prepare_workdir

from executors import wrapper
from executors.local_process import stream_local
from executors.protocol import WRAPPER_NAME, FrameDecoder, FrameKind, SandboxSpec, job_spec_bytes, run_command

SLOW_POLL_S = 5.0  # a wrapper polling this slowly shows any wait that still polls


def test_the_daemon_wakes_when_the_job_exits_not_at_its_next_tick() -> None:
    """ExitWait sleeps up to its timeout but returns once the process exits (a pidfd turns readable),
    and sleeps its whole timeout after that."""
    job = subprocess.Popen(["sleep", "0.1"])
    pause = wrapper.ExitWait(job.pid)
    try:
        assert pause.fd is not None  # Linux 5.3+ with Python 3.9+, as on these machines
        began = time.monotonic()
        pause(10.0)
        assert time.monotonic() - began < 2.0
        assert job.poll() == 0  # woken by its exit, not by anything else
        assert pause.fd is None  # it wakes once: a caller waiting for something else must not spin
        began = time.monotonic()
        pause(0.1)
        assert time.monotonic() - began >= 0.08
    finally:
        pause.close()
        job.wait()


def test_the_launcher_wakes_when_the_daemon_writes_a_record(tmp_path: Path) -> None:
    """A record the daemon writes (write_json_atomic) ends its launcher's wait at once; with nothing
    written the wait lasts its timeout; once the daemon's end is closed the launcher polls."""
    wakeup = wrapper.Wakeup()
    wrapper.LAUNCHER_WAKEUP.append(wakeup)  # as in the daemon
    try:
        wrapper.write_json_atomic(str(tmp_path / "status.json"), {"exit_code": 0})
    finally:
        wrapper.LAUNCHER_WAKEUP.remove(wakeup)
    began = time.monotonic()
    wakeup.wait(10.0)
    assert time.monotonic() - began < 2.0
    began = time.monotonic()
    wakeup.wait(0.2)
    assert time.monotonic() - began >= 0.15
    wakeup.close_writer()  # the daemon has exited
    began = time.monotonic()
    wakeup.wait(10.0)
    assert time.monotonic() - began < 2.0
    assert wakeup.read_fd == -1
    began = time.monotonic()
    wakeup.wait(0.1)
    assert time.monotonic() - began >= 0.08


@pytest.mark.usefixtures("require_sandbox")
def test_a_sandboxed_job_reaches_its_status_without_waiting_for_a_poll(tmp_path: Path) -> None:
    """With every poll of the wrapper made 5 s long, a sandboxed `true` still reaches its STATUS frame
    well within one: the launcher, the daemon's watch and its wait for the sandbox's init are woken."""
    source = WRAPPER_SOURCE.replace(b"\nPOLL_S = 0.01 ", f"\nPOLL_S = {SLOW_POLL_S} ".encode())
    source = source.replace(b"        pause(0.01)\n", f"        pause({SLOW_POLL_S})\n".encode())
    assert f"POLL_S = {SLOW_POLL_S} ".encode() in source
    assert f"pause({SLOW_POLL_S})".encode() in source
    workdir = tmp_path / "job"
    prepare_workdir(workdir, b"", job_spec_bytes("true", 30.0, 1.0, {}, SandboxSpec()))
    (workdir / WRAPPER_NAME).write_bytes(source)

    async def seconds_to_status() -> float:
        began, decoder = time.monotonic(), FrameDecoder()
        async for chunk in stream_local(run_command(sys.executable, workdir, 0, 0)):
            if any(frame.kind is FrameKind.STATUS for frame in decoder.feed(chunk)):
                return time.monotonic() - began
        raise AssertionError("no STATUS frame")

    assert asyncio.run(seconds_to_status()) < SLOW_POLL_S - 1.0
